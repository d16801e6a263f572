//! Conversions between framework types and tfplugin6 protobuf messages.

use waddle_tfplugin::tfplugin6 as pb;

use crate::codec;
use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::path::{AttributePath, PathStep};
use crate::provider::{FunctionSignature, IdentitySchema, Parameter};
use crate::schema::{Attribute, AttributeType, Block, BlockNesting, NestingMode, Schema};
use crate::types::Type;
use crate::value::Value;

pub(crate) fn path_to_proto(p: &AttributePath) -> pb::AttributePath {
    use pb::attribute_path::{step::Selector, Step};
    pb::AttributePath {
        steps: p
            .steps
            .iter()
            .map(|s| Step {
                selector: Some(match s {
                    PathStep::Attr(a) => Selector::AttributeName(a.clone()),
                    PathStep::Index(i) => Selector::ElementKeyInt(*i),
                    PathStep::Key(k) => Selector::ElementKeyString(k.clone()),
                }),
            })
            .collect(),
    }
}

/// Convert a protobuf attribute path (steps without a selector are skipped).
pub fn path_from_proto(p: &pb::AttributePath) -> AttributePath {
    use pb::attribute_path::step::Selector;
    AttributePath {
        steps: p
            .steps
            .iter()
            .filter_map(|s| {
                Some(match s.selector.as_ref()? {
                    Selector::AttributeName(a) => PathStep::Attr(a.clone()),
                    Selector::ElementKeyInt(i) => PathStep::Index(*i),
                    Selector::ElementKeyString(k) => PathStep::Key(k.clone()),
                })
            })
            .collect(),
    }
}

pub(crate) fn diag_to_proto(d: &Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        severity: match d.severity {
            Severity::Error => pb::diagnostic::Severity::Error as i32,
            Severity::Warning => pb::diagnostic::Severity::Warning as i32,
        },
        summary: d.summary.clone(),
        detail: d.detail.clone(),
        attribute: d.attribute.as_ref().map(path_to_proto),
    }
}

/// Convert protobuf diagnostics back (used by tests and the testing harness).
pub fn diags_from_proto(ds: &[pb::Diagnostic]) -> Diagnostics {
    Diagnostics(
        ds.iter()
            .map(|d| Diagnostic {
                severity: if d.severity == pb::diagnostic::Severity::Warning as i32 {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                summary: d.summary.clone(),
                detail: d.detail.clone(),
                attribute: d.attribute.as_ref().map(path_from_proto),
            })
            .collect(),
    )
}

pub(crate) fn diags_to_proto(d: &Diagnostics) -> Vec<pb::Diagnostic> {
    d.iter().map(diag_to_proto).collect()
}

const MARKDOWN: i32 = pb::StringKind::Markdown as i32;

fn attribute_to_proto(name: &str, a: &Attribute) -> pb::schema::Attribute {
    let (ty, nested_type) = match &a.ty {
        AttributeType::Type(t) => (t.to_json_bytes(), None),
        AttributeType::Nested(n) => {
            use pb::schema::object::NestingMode as M;
            let nesting = match n.nesting {
                NestingMode::Single => M::Single,
                NestingMode::List => M::List,
                NestingMode::Set => M::Set,
                NestingMode::Map => M::Map,
            };
            (
                Vec::new(),
                Some(pb::schema::Object {
                    attributes: n
                        .attributes
                        .iter()
                        .map(|(k, x)| attribute_to_proto(k, x))
                        .collect(),
                    nesting: nesting as i32,
                    ..Default::default()
                }),
            )
        }
    };
    pb::schema::Attribute {
        name: name.to_string(),
        r#type: ty,
        nested_type,
        description: a.description.clone(),
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        description_kind: MARKDOWN,
        deprecated: a.deprecation.is_some(),
        write_only: a.write_only,
    }
}

fn block_to_proto(b: &Block, version: i64) -> pb::schema::Block {
    use pb::schema::nested_block::NestingMode as M;
    pb::schema::Block {
        version,
        attributes: b
            .attributes
            .iter()
            .map(|(k, a)| attribute_to_proto(k, a))
            .collect(),
        block_types: b
            .blocks
            .iter()
            .map(|(k, nb)| pb::schema::NestedBlock {
                type_name: k.clone(),
                block: Some(block_to_proto(&nb.block, 0)),
                nesting: match nb.nesting {
                    BlockNesting::Single => M::Single,
                    BlockNesting::List => M::List,
                    BlockNesting::Set => M::Set,
                    BlockNesting::Map => M::Map,
                    BlockNesting::Group => M::Group,
                } as i32,
                min_items: nb.min_items,
                max_items: nb.max_items,
            })
            .collect(),
        description: b.description.clone(),
        description_kind: MARKDOWN,
        deprecated: b.deprecated,
    }
}

/// The protobuf form of a schema.
pub fn schema_to_proto(s: &Schema) -> pb::Schema {
    pb::Schema {
        version: s.version,
        block: Some(block_to_proto(&s.block, s.version)),
    }
}

fn param_to_proto(p: &Parameter) -> pb::function::Parameter {
    pb::function::Parameter {
        name: p.name.clone(),
        r#type: p.ty.to_json_bytes(),
        allow_null_value: p.allow_null,
        allow_unknown_values: p.allow_unknown,
        description: p.description.clone(),
        description_kind: MARKDOWN,
    }
}

pub(crate) fn function_to_proto(f: &FunctionSignature) -> pb::Function {
    pb::Function {
        parameters: f.parameters.iter().map(param_to_proto).collect(),
        variadic_parameter: f.variadic.as_ref().map(param_to_proto),
        r#return: Some(pb::function::Return {
            r#type: f.return_type.to_json_bytes(),
        }),
        summary: f.summary.clone(),
        description: f.description.clone(),
        description_kind: MARKDOWN,
        deprecation_message: f.deprecation.clone().unwrap_or_default(),
    }
}

pub(crate) fn identity_schema_to_proto(s: &IdentitySchema) -> pb::ResourceIdentitySchema {
    pb::ResourceIdentitySchema {
        version: s.version,
        identity_attributes: s
            .attributes
            .iter()
            .map(|a| pb::resource_identity_schema::IdentityAttribute {
                name: a.name.clone(),
                r#type: a.ty.to_json_bytes(),
                required_for_import: a.required_for_import,
                optional_for_import: a.optional_for_import,
                description: a.description.clone(),
            })
            .collect(),
    }
}

/// Decode a DynamicValue (msgpack preferred, else JSON; absent/empty = null).
pub fn decode_dynamic(
    dv: Option<&pb::DynamicValue>,
    ty: &Type,
) -> Result<Value, codec::ValueError> {
    match dv {
        Some(d) if !d.msgpack.is_empty() => codec::decode_msgpack(&d.msgpack, ty),
        Some(d) if !d.json.is_empty() => codec::decode_json_bytes(&d.json, ty, Default::default()),
        _ => Ok(Value::Null),
    }
}

/// Encode a value as a msgpack DynamicValue.
pub fn encode_dynamic(v: &Value, ty: &Type) -> Result<pb::DynamicValue, codec::ValueError> {
    Ok(pb::DynamicValue {
        msgpack: codec::encode_msgpack(v, ty)?,
        json: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::NestedBlock;

    #[test]
    fn schema_conversion() {
        let s = Schema::new("**md**")
            .version(3)
            .attribute(
                "a",
                Attribute::string().required().sensitive().description("d"),
            )
            .attribute(
                "w",
                Attribute::string()
                    .optional()
                    .write_only()
                    .deprecated("old"),
            )
            .attribute(
                "n",
                Attribute::nested(NestingMode::Set, [("x", Attribute::number().optional())])
                    .optional(),
            )
            .block(
                "b",
                NestedBlock::list(Block::new()).min_items(1).max_items(2),
            );
        let p = schema_to_proto(&s);
        assert_eq!(p.version, 3);
        let b = p.block.unwrap();
        assert_eq!(b.version, 3);
        assert_eq!(b.description, "**md**");
        assert_eq!(b.description_kind, MARKDOWN);
        let a = &b.attributes[0];
        assert_eq!(
            (a.name.as_str(), a.r#type.as_slice()),
            ("a", &br#""string""#[..])
        );
        assert!(a.required && a.sensitive && !a.optional);
        let n = &b.attributes[1];
        assert_eq!(n.name, "n");
        assert!(n.r#type.is_empty());
        let nt = n.nested_type.as_ref().unwrap();
        assert_eq!(nt.nesting, pb::schema::object::NestingMode::Set as i32);
        let w = &b.attributes[2];
        assert!(w.write_only && w.deprecated);
        let nb = &b.block_types[0];
        assert_eq!(
            (nb.type_name.as_str(), nb.min_items, nb.max_items),
            ("b", 1, 2)
        );
        assert_eq!(
            nb.nesting,
            pb::schema::nested_block::NestingMode::List as i32
        );
    }

    #[test]
    fn path_conversion_roundtrip() {
        let p = AttributePath::attr("a").then_index(2).then_key("k");
        assert_eq!(path_from_proto(&path_to_proto(&p)), p);
    }
}
