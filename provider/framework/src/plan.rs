//! Framework semantics shared by the service: configuration validation and the
//! PlanResourceChange steps (defaults, computed-unknown marking, attribute plan modifiers,
//! write-only nulling). Kept free of protobuf types so it is unit-testable.

use crate::diag::Diagnostics;
use crate::path::{AttributePath, PathStep};
use crate::schema::{
    Attribute, AttributeType, Block, BlockNesting, NestingMode, PlanModifier, Schema,
};
use crate::value::Value;

static NULL: Value = Value::Null;

/// What the configuration validation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValidateFor {
    /// A managed resource; `write_only_allowed` from the client capabilities.
    Resource {
        write_only_allowed: bool,
    },
    Other,
}

/// Framework-level configuration checks: required, read-only, deprecated and write-only
/// attributes, and block item counts. Unknown values are never errors.
pub(crate) fn validate_config(
    schema: &Schema,
    config: &Value,
    what: ValidateFor,
    diags: &mut Diagnostics,
) {
    validate_block(&schema.block, config, &AttributePath::root(), what, diags);
}

fn validate_attrs<'a>(
    attrs: impl Iterator<Item = (&'a String, &'a Attribute)>,
    obj: &Value,
    path: &AttributePath,
    what: ValidateFor,
    diags: &mut Diagnostics,
) {
    for (name, a) in attrs {
        let p = path.with(PathStep::Attr(name.clone()));
        let v = obj.get_attr(name).unwrap_or(&NULL);
        if a.required && v.is_null() {
            diags.error_at(
                p.clone(),
                "Missing Configuration for Required Attribute",
                format!("Must set a configuration value for the {p} attribute as the provider has marked it as required."),
            );
        }
        if a.is_read_only() && !v.is_null() {
            diags.error_at(
                p.clone(),
                "Invalid Configuration for Read-Only Attribute",
                format!("Cannot set value for the {p} attribute as the provider has marked it as read-only. Remove the configuration line setting the value."),
            );
        }
        if let Some(msg) = &a.deprecation {
            if !v.is_null() {
                diags.warning_at(p.clone(), "Attribute Deprecated", msg.clone());
            }
        }
        if a.write_only && !v.is_null() {
            match what {
                ValidateFor::Resource { write_only_allowed: true } => {}
                ValidateFor::Resource { write_only_allowed: false } => diags.error_at(
                    p.clone(),
                    "WriteOnly Attribute Not Allowed",
                    format!("The {p} attribute is write-only, and this client does not support write-only attributes. Write-only attributes are supported by OpenTofu/Terraform 1.11 and later."),
                ),
                ValidateFor::Other => diags.error_at(
                    p.clone(),
                    "WriteOnly Attribute Not Allowed",
                    format!("The {p} attribute is write-only, which is only valid in managed resources."),
                ),
            }
        }
        if let AttributeType::Nested(n) = &a.ty {
            if v.is_unknown() || v.is_null() {
                continue;
            }
            for_each_nested(n.nesting, v, &p, |elem, ep| {
                validate_attrs(n.attributes.iter(), elem, &ep, what, diags)
            });
        }
    }
}

fn validate_block(
    b: &Block,
    obj: &Value,
    path: &AttributePath,
    what: ValidateFor,
    diags: &mut Diagnostics,
) {
    validate_attrs(b.attributes.iter(), obj, path, what, diags);
    for (name, nb) in &b.blocks {
        let p = path.with(PathStep::Attr(name.clone()));
        let v = obj.get_attr(name).unwrap_or(&NULL);
        if v.is_unknown() {
            continue;
        }
        let count = match nb.nesting {
            BlockNesting::Single | BlockNesting::Group => i64::from(!v.is_null()),
            BlockNesting::List | BlockNesting::Set => v.as_elements().map_or(0, |e| e.len() as i64),
            BlockNesting::Map => v.as_entries().map_or(0, |e| e.len() as i64),
        };
        let all_known = match v.inner() {
            Value::List(e) | Value::Set(e) => e.iter().all(Value::is_known),
            _ => true,
        };
        if nb.nesting != BlockNesting::Group && all_known {
            if count < nb.min_items {
                diags.error_at(
                    p.clone(),
                    "Missing required block",
                    format!(
                        "At least {} \"{name}\" block(s) are required.",
                        nb.min_items
                    ),
                );
            }
            if nb.max_items > 0 && count > nb.max_items {
                diags.error_at(
                    p.clone(),
                    "Too many blocks",
                    format!(
                        "No more than {} \"{name}\" block(s) are allowed.",
                        nb.max_items
                    ),
                );
            }
        }
        if v.is_null() {
            continue;
        }
        let mode = match nb.nesting {
            BlockNesting::Single | BlockNesting::Group => NestingMode::Single,
            BlockNesting::List => NestingMode::List,
            BlockNesting::Set => NestingMode::Set,
            BlockNesting::Map => NestingMode::Map,
        };
        for_each_nested(mode, v, &p, |elem, ep| {
            validate_block(&nb.block, elem, &ep, what, diags)
        });
    }
}

fn for_each_nested(
    mode: NestingMode,
    v: &Value,
    p: &AttributePath,
    mut f: impl FnMut(&Value, AttributePath),
) {
    match mode {
        NestingMode::Single => f(v, p.clone()),
        NestingMode::List | NestingMode::Set => {
            for (i, e) in v.as_elements().unwrap_or(&[]).iter().enumerate() {
                if e.is_known() && !e.is_null() {
                    f(e, p.with(PathStep::Index(i as i64)));
                }
            }
        }
        NestingMode::Map => {
            if let Some(m) = v.as_entries() {
                for (k, e) in m {
                    if e.is_known() && !e.is_null() {
                        f(e, p.with(PathStep::Key(k.clone())));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Plan walking
// ---------------------------------------------------------------------------------------

/// Visitor over (attribute, config value, prior value, planned value, path). Return true to
/// descend into nested attributes of the (possibly updated) planned value.
type Visit<'f> = dyn FnMut(&Attribute, &Value, &Value, &mut Value, &AttributePath) -> bool + 'f;

fn child<'v>(v: &'v Value, step: &PathStep) -> &'v Value {
    v.get_step(step).unwrap_or(&NULL)
}

fn walk_nested(
    mode: NestingMode,
    cfg: &Value,
    prior: &Value,
    plan: &mut Value,
    path: &AttributePath,
    f: &mut dyn FnMut(&Value, &Value, &mut Value, &AttributePath),
) {
    if plan.is_unknown() || plan.is_null() {
        return;
    }
    match mode {
        NestingMode::Single => f(cfg, prior, plan, path),
        NestingMode::List | NestingMode::Set => {
            let n = plan.as_elements().map_or(0, <[Value]>::len);
            for i in 0..n {
                let step = PathStep::Index(i as i64);
                let (c, p) = (child(cfg, &step), child(prior, &step));
                if let Some(e) = plan.get_path_mut(&AttributePath {
                    steps: vec![step.clone()],
                }) {
                    f(c, p, e, &path.with(step));
                }
            }
        }
        NestingMode::Map => {
            let keys: Vec<String> = plan
                .as_entries()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            for k in keys {
                let step = PathStep::Key(k);
                let (c, p) = (child(cfg, &step), child(prior, &step));
                if let Some(e) = plan.get_path_mut(&AttributePath {
                    steps: vec![step.clone()],
                }) {
                    f(c, p, e, &path.with(step));
                }
            }
        }
    }
}

fn walk_attrs<'a>(
    attrs: impl Iterator<Item = (&'a String, &'a Attribute)>,
    cfg: &Value,
    prior: &Value,
    plan: &mut Value,
    path: &AttributePath,
    visit: &mut Visit<'_>,
) {
    for (name, a) in attrs {
        let step = PathStep::Attr(name.clone());
        let (c, p) = (child(cfg, &step), child(prior, &step));
        let Some(slot) = plan.get_attr_mut(name) else {
            continue;
        };
        let ap = path.with(step);
        if !visit(a, c, p, slot, &ap) {
            continue;
        }
        if let AttributeType::Nested(n) = &a.ty {
            walk_nested(n.nesting, c, p, slot, &ap, &mut |c, p, e, ep| {
                walk_attrs(n.attributes.iter(), c, p, e, ep, visit)
            });
        }
    }
}

fn walk_block(
    b: &Block,
    cfg: &Value,
    prior: &Value,
    plan: &mut Value,
    path: &AttributePath,
    visit: &mut Visit<'_>,
) {
    walk_attrs(b.attributes.iter(), cfg, prior, plan, path, visit);
    for (name, nb) in &b.blocks {
        let step = PathStep::Attr(name.clone());
        let (c, p) = (child(cfg, &step), child(prior, &step));
        let Some(slot) = plan.get_attr_mut(name) else {
            continue;
        };
        let mode = match nb.nesting {
            BlockNesting::Single | BlockNesting::Group => NestingMode::Single,
            BlockNesting::List => NestingMode::List,
            BlockNesting::Set => NestingMode::Set,
            BlockNesting::Map => NestingMode::Map,
        };
        walk_nested(mode, c, p, slot, &path.with(step), &mut |c, p, e, ep| {
            walk_block(&nb.block, c, p, e, ep, visit)
        });
    }
}

/// Null every write-only attribute in `v` (plan or state), at any depth.
pub(crate) fn null_write_only(schema: &Schema, v: &mut Value) {
    walk_block(
        &schema.block,
        &NULL,
        &NULL,
        v,
        &AttributePath::root(),
        &mut |a, _, _, plan, _| {
            if a.write_only {
                *plan = Value::Null;
                false
            } else {
                true
            }
        },
    );
}

/// The framework's part of PlanResourceChange for create/update: returns the planned state
/// and the requires-replace paths.
pub(crate) fn plan_change(
    schema: &Schema,
    config: &Value,
    prior: &Value,
    proposed: &Value,
) -> (Value, Vec<AttributePath>) {
    let root = AttributePath::root();
    let mut plan = proposed.clone();

    // 1. defaults where the configuration is null
    walk_block(
        &schema.block,
        config,
        prior,
        &mut plan,
        &root,
        &mut |a, c, _, p, _| {
            if let Some(d) = &a.default {
                if c.is_null() {
                    *p = d.clone();
                }
            }
            true
        },
    );

    // Write-only values are never part of the plan; null them before looking for changes
    // (otherwise a configured write-only value would look like a change on every plan).
    null_write_only(schema, &mut plan);

    // 2. computed attributes not configured become unknown when anything changes
    let changing = prior.is_null() || !plan.equals(prior);
    if changing {
        walk_block(
            &schema.block,
            config,
            prior,
            &mut plan,
            &root,
            &mut |a, c, _, p, _| {
                if a.computed && a.default.is_none() && c.is_null() && !a.write_only {
                    *p = Value::unknown();
                    return false;
                }
                true
            },
        );
    }

    // 3. attribute plan modifiers
    let mut requires_replace = Vec::new();
    let exists = !prior.is_null();
    walk_block(
        &schema.block,
        config,
        prior,
        &mut plan,
        &root,
        &mut |a, c, s, p, path| {
            for m in &a.plan_modifiers {
                match m {
                    PlanModifier::UseStateForUnknown => {
                        if exists && !s.is_null() && p.is_unknown() && !c.is_unknown() {
                            *p = s.clone();
                        }
                    }
                    PlanModifier::RequiresReplace => {
                        if exists && !p.equals(s) {
                            requires_replace.push(path.clone());
                        }
                    }
                }
            }
            true
        },
    );

    // 4. in case a plan modifier copied one back
    null_write_only(schema, &mut plan);
    (plan, requires_replace)
}

/// The path of the first unknown inside `v`, if any.
pub(crate) fn first_unknown(v: &Value, path: &AttributePath) -> Option<AttributePath> {
    match v.inner() {
        Value::Unknown(_) => Some(path.clone()),
        Value::List(xs) | Value::Set(xs) | Value::Tuple(xs) => xs
            .iter()
            .enumerate()
            .find_map(|(i, x)| first_unknown(x, &path.with(PathStep::Index(i as i64)))),
        Value::Map(m) => m
            .iter()
            .find_map(|(k, x)| first_unknown(x, &path.with(PathStep::Key(k.clone())))),
        Value::Object(m) => m
            .iter()
            .find_map(|(k, x)| first_unknown(x, &path.with(PathStep::Attr(k.clone())))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::NestedBlock;
    use crate::types::Type;

    fn schema() -> Schema {
        Schema::new("t")
            .attribute("id", Attribute::string().computed().use_state_for_unknown())
            .attribute("name", Attribute::string().required().requires_replace())
            .attribute("size", Attribute::number().default(Value::from(3)))
            .attribute("status", Attribute::string().computed())
            .attribute(
                "secret",
                Attribute::string().optional().sensitive().write_only(),
            )
            .attribute(
                "routes",
                Attribute::nested(
                    NestingMode::List,
                    [
                        ("host", Attribute::string().required().requires_replace()),
                        ("weight", Attribute::number().optional().computed()),
                        ("token", Attribute::string().optional().write_only()),
                    ],
                )
                .optional(),
            )
            .block(
                "backend",
                NestedBlock::list(Block::new().attribute("addr", Attribute::string().required()))
                    .min_items(1)
                    .max_items(2),
            )
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        let mut v = schema().null_value();
        for (k, x) in pairs {
            v.set_path(&AttributePath::attr(k), x);
        }
        v
    }

    fn route(host: &str, weight: Value, token: Value) -> Value {
        Value::object([
            ("host", Value::from(host)),
            ("weight", weight),
            ("token", token),
        ])
    }

    #[test]
    fn create_plan() {
        let config = obj(vec![
            ("name", "a".into()),
            ("secret", "s3cret".into()),
            (
                "routes",
                Value::List(vec![route("h", Value::Null, "t".into())]),
            ),
            (
                "backend",
                Value::List(vec![Value::object([("addr", Value::from("x"))])]),
            ),
        ]);
        let (plan, rr) = plan_change(&schema(), &config, &Value::Null, &config);
        assert!(rr.is_empty());
        assert!(plan.get_attr("id").unwrap().is_unknown());
        assert!(plan.get_attr("status").unwrap().is_unknown());
        assert_eq!(plan.get_attr("size").and_then(Value::as_i64), Some(3));
        assert!(
            plan.get_attr("secret").unwrap().is_null(),
            "write-only nulled"
        );
        let r0 = AttributePath::attr("routes").then_index(0);
        assert!(plan
            .get_path(&r0.clone().then_attr("weight"))
            .unwrap()
            .is_unknown());
        assert!(plan.get_path(&r0.then_attr("token")).unwrap().is_null());
    }

    #[test]
    fn update_plan_requires_replace_and_use_state() {
        let prior = obj(vec![
            ("id", "i-1".into()),
            ("name", "a".into()),
            ("size", Value::from(3)),
            ("status", "ok".into()),
            (
                "routes",
                Value::List(vec![route("h", Value::from(5), Value::Null)]),
            ),
        ]);
        // name and routes[0].host change; proposed carries prior computed values
        let config = obj(vec![
            ("name", "b".into()),
            (
                "routes",
                Value::List(vec![route("h2", Value::Null, Value::Null)]),
            ),
        ]);
        let mut proposed = config.clone();
        for k in ["id", "status", "size"] {
            proposed.set_path(&AttributePath::attr(k), prior.get_attr(k).unwrap().clone());
        }
        let (plan, rr) = plan_change(&schema(), &config, &prior, &proposed);
        assert_eq!(
            rr,
            vec![
                AttributePath::attr("name"),
                AttributePath::attr("routes")
                    .then_index(0)
                    .then_attr("host")
            ]
        );
        assert_eq!(
            plan.get_attr("id").and_then(Value::as_str),
            Some("i-1"),
            "UseStateForUnknown"
        );
        assert!(plan.get_attr("status").unwrap().is_unknown());

        // no change: computed values keep prior state, nothing to replace
        let config = obj(vec![
            ("name", "a".into()),
            (
                "routes",
                Value::List(vec![route("h", Value::Null, Value::Null)]),
            ),
        ]);
        let mut proposed = config.clone();
        for k in ["id", "status", "size"] {
            proposed.set_path(&AttributePath::attr(k), prior.get_attr(k).unwrap().clone());
        }
        proposed.set_path(
            &AttributePath::attr("routes")
                .then_index(0)
                .then_attr("weight"),
            Value::from(5),
        );
        let (plan, rr) = plan_change(&schema(), &config, &prior, &proposed);
        assert!(rr.is_empty());
        assert!(plan.equals(&prior), "{plan:?}");
    }

    #[test]
    fn validation_paths() {
        let config = obj(vec![
            ("id", "x".into()),
            ("secret", Value::unknown()),
            (
                "routes",
                Value::List(vec![
                    route("h", Value::Null, Value::Null),
                    Value::object([("host", Value::Null)]),
                ]),
            ),
            ("backend", Value::List(vec![])),
        ]);
        let mut d = Diagnostics::new();
        validate_config(
            &schema(),
            &config,
            ValidateFor::Resource {
                write_only_allowed: false,
            },
            &mut d,
        );
        let paths: Vec<String> = d
            .iter()
            .map(|x| x.attribute.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(
            paths,
            vec!["id", "name", "routes[1].host", "secret", "backend"],
            "{d}"
        );
        let mut d = Diagnostics::new();
        validate_config(
            &schema(),
            &config,
            ValidateFor::Resource {
                write_only_allowed: true,
            },
            &mut d,
        );
        assert_eq!(d.len(), 4);
        // unknown values are never errors
        let mut d = Diagnostics::new();
        let unknown = Value::object([("name", Value::unknown()), ("backend", Value::unknown())]);
        validate_config(&schema(), &unknown, ValidateFor::Other, &mut d);
        assert!(d.is_empty(), "{d}");
        let _ = Type::String;
    }

    #[test]
    fn nested_maps_sets_and_defaults() {
        let s = Schema::new("t")
            .attribute(
                "servers",
                Attribute::nested(
                    NestingMode::Map,
                    [
                        ("port", Attribute::number().default(Value::from(443))),
                        ("ip", Attribute::string().computed()),
                        ("key", Attribute::string().optional().write_only()),
                    ],
                )
                .optional(),
            )
            .block(
                "rule",
                NestedBlock::set(
                    Block::new()
                        .attribute("name", Attribute::string().required().requires_replace())
                        .attribute("uid", Attribute::string().computed()),
                ),
            );
        let server = |port: Value, ip: Value, key: Value| {
            Value::object([("port", port), ("ip", ip), ("key", key)])
        };
        let config = Value::object([
            (
                "servers",
                Value::Map(
                    [(
                        "a".to_string(),
                        server(Value::Null, Value::Null, "k".into()),
                    )]
                    .into(),
                ),
            ),
            (
                "rule",
                Value::Set(vec![Value::object([
                    ("name", "r1".into()),
                    ("uid", Value::Null),
                ])]),
            ),
        ]);
        let (plan, rr) = plan_change(&s, &config, &Value::Null, &config);
        assert!(rr.is_empty());
        let a = AttributePath::attr("servers").then_key("a");
        assert_eq!(
            plan.get_path(&a.clone().then_attr("port"))
                .and_then(Value::as_i64),
            Some(443)
        );
        assert!(plan
            .get_path(&a.clone().then_attr("ip"))
            .unwrap()
            .is_unknown());
        assert!(plan.get_path(&a.then_attr("key")).unwrap().is_null());
        let uid = AttributePath::attr("rule").then_index(0).then_attr("uid");
        assert!(plan.get_path(&uid).unwrap().is_unknown());

        // update: the set element's name changes -> replacement at the element path
        let mut prior = plan.clone();
        prior.set_path(
            &AttributePath::attr("servers").then_key("a").then_attr("ip"),
            "10.0.0.1".into(),
        );
        prior.set_path(&uid, "u1".into());
        let mut config2 = config.clone();
        config2.set_path(
            &AttributePath::attr("rule").then_index(0).then_attr("name"),
            "r2".into(),
        );
        let mut proposed = prior.clone();
        proposed.set_path(
            &AttributePath::attr("rule").then_index(0).then_attr("name"),
            "r2".into(),
        );
        let (_, rr) = plan_change(&s, &config2, &prior, &proposed);
        assert_eq!(
            rr,
            vec![AttributePath::attr("rule").then_index(0).then_attr("name")]
        );
        // an unknown planned value for a RequiresReplace attribute also forces replacement
        let mut proposed = prior.clone();
        proposed.set_path(
            &AttributePath::attr("rule").then_index(0).then_attr("name"),
            Value::unknown(),
        );
        let (_, rr) = plan_change(&s, &config2, &prior, &proposed);
        assert_eq!(rr.len(), 1);
    }

    #[test]
    fn first_unknown_path() {
        let v = Value::object([("a", Value::Map([("k".into(), Value::unknown())].into()))]);
        assert_eq!(
            first_unknown(&v, &AttributePath::root()),
            Some(AttributePath::attr("a").then_key("k"))
        );
    }
}
