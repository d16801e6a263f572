//! Typed views over `terraform show -json` (state and plan) and `terraform output -json`.

use std::collections::BTreeMap;

use serde_json::Value;

/// One resource instance from the state (`values.root_module` and every `child_modules` entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Full address, e.g. `module.net.waddle_sni_proxy.edge["a"]`, `data.waddle_talos_image.x`.
    pub address: String,
    /// `managed` or `data`.
    pub mode: String,
    pub type_name: String,
    pub name: String,
    pub provider_name: String,
    /// The attribute values (sensitive ones in clear, as `show -json` prints them).
    pub values: Value,
    /// Mirror of `values` with `true` where a value is sensitive.
    pub sensitive_values: Value,
}

impl Resource {
    fn from_json(v: &Value) -> Option<Resource> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Resource {
            address: s("address")?,
            mode: s("mode").unwrap_or_default(),
            type_name: s("type").unwrap_or_default(),
            name: s("name").unwrap_or_default(),
            provider_name: s("provider_name").unwrap_or_default(),
            values: v.get("values").cloned().unwrap_or(Value::Null),
            sensitive_values: v.get("sensitive_values").cloned().unwrap_or(Value::Null),
        })
    }

    pub fn is_managed(&self) -> bool {
        self.mode == "managed"
    }

    /// Attribute by dotted path (`a.b.0.c`; numeric steps index lists). `None` when missing.
    /// A present-but-null attribute is `Some(&Value::Null)`.
    pub fn attr(&self, path: &str) -> Option<&Value> {
        lookup(&self.values, path)
    }

    /// Attribute by explicit steps (for map keys containing dots).
    pub fn attr_at(&self, steps: &[&str]) -> Option<&Value> {
        lookup_steps(&self.values, steps.iter().copied())
    }

    /// String attribute.
    pub fn str_attr(&self, path: &str) -> Option<&str> {
        self.attr(path).and_then(Value::as_str)
    }

    /// The attributes flattened as `path -> scalar JSON` (lists by index, maps by key).
    pub fn flat(&self) -> BTreeMap<String, Value> {
        flatten(&self.values)
    }
}

/// Walks a JSON value along a dotted path.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(v);
    }
    lookup_steps(v, path.split('.'))
}

fn lookup_steps<'a, 'b>(
    v: &'a Value,
    steps: impl IntoIterator<Item = &'b str>,
) -> Option<&'a Value> {
    let mut cur = v;
    for step in steps {
        cur = match cur {
            Value::Object(m) => m.get(step)?,
            Value::Array(a) => a.get(step.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Flattens nested JSON into `a.b.0.c -> scalar` (empty containers become `a.b -> []`/`{}`).
pub fn flatten(v: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        let join = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    walk(&join(k), c, out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, c) in a.iter().enumerate() {
                    walk(&join(&i.to_string()), c, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", v, &mut out);
    out
}

/// The state as printed by `terraform show -json` (no plan file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub raw: Value,
}

impl State {
    pub fn from_json(raw: Value) -> State {
        State { raw }
    }

    /// Every resource instance in every module, in state order.
    pub fn resources(&self) -> Vec<Resource> {
        fn walk(module: &Value, out: &mut Vec<Resource>) {
            if let Some(rs) = module.get("resources").and_then(Value::as_array) {
                out.extend(rs.iter().filter_map(Resource::from_json));
            }
            if let Some(children) = module.get("child_modules").and_then(Value::as_array) {
                for c in children {
                    walk(c, out);
                }
            }
        }
        let mut out = Vec::new();
        if let Some(root) = self.raw.pointer("/values/root_module") {
            walk(root, &mut out);
        }
        out
    }

    /// Managed resources only (no data sources).
    pub fn managed_resources(&self) -> Vec<Resource> {
        self.resources()
            .into_iter()
            .filter(Resource::is_managed)
            .collect()
    }

    /// Resource instance by full address.
    pub fn resource(&self, address: &str) -> Option<Resource> {
        self.resources().into_iter().find(|r| r.address == address)
    }

    /// Addresses of all resource instances.
    pub fn addresses(&self) -> Vec<String> {
        self.resources().into_iter().map(|r| r.address).collect()
    }

    /// The CLI version that wrote this JSON.
    pub fn terraform_version(&self) -> Option<&str> {
        self.raw.get("terraform_version").and_then(Value::as_str)
    }
}

/// `terraform output -json`: `{name: {sensitive, type, value}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    pub raw: Value,
}

impl Outputs {
    pub fn from_json(raw: Value) -> Outputs {
        Outputs { raw }
    }

    /// Output value (sensitive values in clear).
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.raw.get(name).and_then(|o| o.get("value"))
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    pub fn is_sensitive(&self, name: &str) -> Option<bool> {
        self.raw
            .get(name)
            .and_then(|o| o.get("sensitive"))
            .and_then(Value::as_bool)
    }

    pub fn names(&self) -> Vec<String> {
        self.raw
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

/// A saved plan as printed by `terraform show -json PLANFILE`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub raw: Value,
}

/// One entry of `resource_changes`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceChange {
    pub address: String,
    /// e.g. `["no-op"]`, `["create"]`, `["update"]`, `["delete","create"]`, `["read"]`.
    pub actions: Vec<String>,
    pub before: Value,
    pub after: Value,
    pub after_unknown: Value,
}

impl Plan {
    pub fn from_json(raw: Value) -> Plan {
        Plan { raw }
    }

    pub fn resource_changes(&self) -> Vec<ResourceChange> {
        let Some(rcs) = self.raw.get("resource_changes").and_then(Value::as_array) else {
            return Vec::new();
        };
        rcs.iter()
            .filter_map(|rc| {
                let change = rc.get("change")?;
                Some(ResourceChange {
                    address: rc.get("address")?.as_str()?.to_owned(),
                    actions: change
                        .get("actions")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    before: change.get("before").cloned().unwrap_or(Value::Null),
                    after: change.get("after").cloned().unwrap_or(Value::Null),
                    after_unknown: change.get("after_unknown").cloned().unwrap_or(Value::Null),
                })
            })
            .collect()
    }

    /// Planned actions for one resource instance.
    pub fn actions(&self, address: &str) -> Option<Vec<String>> {
        self.resource_changes()
            .into_iter()
            .find(|rc| rc.address == address)
            .map(|rc| rc.actions)
    }

    /// Planned output values (`planned_values.outputs.NAME.value`; absent while unknown).
    pub fn planned_output(&self, name: &str) -> Option<&Value> {
        self.raw
            .get("planned_values")
            .and_then(|p| p.get("outputs"))
            .and_then(|o| o.get(name))
            .and_then(|o| o.get("value"))
    }
}

/// Compares two resources' attributes after flattening, skipping every key equal to or under an
/// ignored prefix. Returns one line per difference.
pub fn diff_attributes(expected: &Resource, actual: &Resource, ignore: &[String]) -> Vec<String> {
    let ignored = |k: &str| {
        ignore.iter().any(|p| {
            k == p
                || k.strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    };
    let (a, b) = (expected.flat(), actual.flat());
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !ignored(k))
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (x, y) if x == y => None,
            (x, y) => Some(format!(
                "{k}: applied {} != imported {}",
                x.map_or("<absent>".into(), Value::to_string),
                y.map_or("<absent>".into(), Value::to_string)
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample_state() -> State {
        State::from_json(json!({
            "format_version": "0.2",
            "terraform_version": "1.0.3",
            "values": {
                "outputs": {"id": {"sensitive": false, "value": "abc"}},
                "root_module": {
                    "resources": [
                        {"address": "data.waddle_talos_image.this", "mode": "data",
                         "type": "waddle_talos_image", "name": "this",
                         "provider_name": "registry.terraform.io/waddle-social/waddle",
                         "values": {"schematic_id": "abc", "extensions": ["a", "b"],
                                    "meta": {"k.with.dots": 1}},
                         "sensitive_values": {}},
                    ],
                    "child_modules": [{
                        "address": "module.m",
                        "resources": [
                            {"address": "module.m.waddle_x.y[0]", "mode": "managed",
                             "type": "waddle_x", "name": "y", "values": {"id": "1", "n": null}}
                        ]
                    }]
                }
            }
        }))
    }

    #[test]
    fn finds_resources_in_all_modules() {
        let s = sample_state();
        assert_eq!(
            s.addresses(),
            vec!["data.waddle_talos_image.this", "module.m.waddle_x.y[0]"]
        );
        assert_eq!(s.managed_resources().len(), 1);
        let r = s.resource("data.waddle_talos_image.this").unwrap();
        assert_eq!(r.str_attr("schematic_id"), Some("abc"));
        assert_eq!(r.attr("extensions.1"), Some(&json!("b")));
        assert_eq!(r.attr("extensions.2"), None);
        assert_eq!(r.attr("extensions.x"), None);
        assert_eq!(r.attr_at(&["meta", "k.with.dots"]), Some(&json!(1)));
        let m = s.resource("module.m.waddle_x.y[0]").unwrap();
        assert_eq!(m.attr("n"), Some(&Value::Null));
        assert!(s.resource("nope").is_none());
        assert_eq!(s.terraform_version(), Some("1.0.3"));
        // Empty state after destroy
        assert!(State::from_json(json!({"format_version": "0.2"}))
            .resources()
            .is_empty());
    }

    #[test]
    fn flattens_and_diffs_with_ignores() {
        let a = Resource::from_json(&json!({"address": "x.y", "values":
            {"id": "1", "list": ["a", "b"], "nested": {"secret": "s", "keep": 1}, "empty": []}}))
        .unwrap();
        let mut b = a.clone();
        assert!(diff_attributes(&a, &b, &[]).is_empty());
        assert_eq!(a.flat().get("list.1"), Some(&json!("b")));
        assert_eq!(a.flat().get("empty"), Some(&json!([])));
        b.values["nested"]["secret"] = json!(null);
        b.values["list"] = json!(["a"]);
        let d = diff_attributes(&a, &b, &[]);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            d[0].starts_with("list.1: applied \"b\" != imported <absent>"),
            "{d:?}"
        );
        assert!(diff_attributes(&a, &b, &["nested".into(), "list".into()]).is_empty());
        // prefix matching is by path step, not by string prefix
        assert_eq!(
            diff_attributes(&a, &b, &["nest".into(), "lis".into()]).len(),
            2
        );
    }

    #[test]
    fn outputs_and_plans() {
        let o =
            Outputs::from_json(json!({"a": {"sensitive": true, "type": "string", "value": "s"}}));
        assert_eq!(o.str("a"), Some("s"));
        assert_eq!(o.is_sensitive("a"), Some(true));
        assert_eq!(o.get("b"), None);
        assert_eq!(o.names(), vec!["a"]);
        let p = Plan::from_json(json!({
            "planned_values": {"outputs": {"x": {"sensitive": false, "value": 1}}},
            "resource_changes": [{"address": "waddle_x.y", "change": {
                "actions": ["delete", "create"], "before": {"a": 1}, "after": {"a": 2}}}]
        }));
        assert_eq!(
            p.actions("waddle_x.y"),
            Some(vec!["delete".to_string(), "create".to_string()])
        );
        assert_eq!(p.planned_output("x"), Some(&json!(1)));
        assert_eq!(p.resource_changes()[0].after, json!({"a": 2}));
    }
}
