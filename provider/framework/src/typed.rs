//! Serde bridging between [`Value`] and Rust types, and the round-trip proof helper that
//! keeps a resource's schema and its Rust state type from drifting.
//!
//! Convention: a Rust state type mirrors the schema's object: one field per attribute or
//! block (same name), `Option<T>` for anything that may be null, `Vec<T>` for lists/sets,
//! `BTreeMap<String, T>` for maps, nested structs for nested attributes/blocks.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;

use crate::codec::{self, ValueError};
use crate::number::Number;
use crate::path::{AttributePath, PathStep};
use crate::schema::Schema;
use crate::types::{ObjectType, Type};
use crate::value::Value;

/// Why a typed conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum TypedError {
    /// The value holds an unknown where a concrete value is needed.
    #[error("{0}: value is unknown")]
    Unknown(AttributePath),
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("serde: {0}")]
    Serde(#[from] serde_json::Error),
}

/// Plain JSON view of a wholly-known value (no cty type wrappers).
fn to_plain_json(v: &Value, path: &AttributePath) -> Result<Json, TypedError> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Unknown(_) => return Err(TypedError::Unknown(path.clone())),
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Number(n) => Json::Number(
            serde_json::from_str::<serde_json::Number>(&n.to_plain_string())
                .map_err(TypedError::Serde)?,
        ),
        Value::List(xs) | Value::Set(xs) | Value::Tuple(xs) => Json::Array(
            xs.iter()
                .enumerate()
                .map(|(i, x)| to_plain_json(x, &path.with(PathStep::Index(i as i64))))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, x)| {
                    Ok((
                        k.clone(),
                        to_plain_json(x, &path.with(PathStep::Key(k.clone())))?,
                    ))
                })
                .collect::<Result<_, TypedError>>()?,
        ),
        Value::Object(m) => Json::Object(
            m.iter()
                .map(|(k, x)| {
                    Ok((
                        k.clone(),
                        to_plain_json(x, &path.with(PathStep::Attr(k.clone())))?,
                    ))
                })
                .collect::<Result<_, TypedError>>()?,
        ),
        Value::Dynamic(_, inner) => to_plain_json(inner, path)?,
    })
}

/// Plain JSON -> Value guided by a type; at dynamic positions the type is inferred from the
/// JSON shape. Extra object keys are errors; missing ones become null.
fn from_plain_json(j: &Json, ty: &Type, path: &AttributePath) -> Result<Value, ValueError> {
    if j.is_null() {
        return Ok(Value::Null);
    }
    if *ty == Type::Dynamic {
        let t = infer_json_type(j);
        let v = from_plain_json(j, &t, path)?;
        return Ok(Value::Dynamic(t, Box::new(v)));
    }
    match (ty, j) {
        (Type::List(et) | Type::Set(et), Json::Array(items)) => {
            let vals = items
                .iter()
                .enumerate()
                .map(|(i, x)| from_plain_json(x, et, &path.with(PathStep::Index(i as i64))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::List(_)) {
                Value::List(vals)
            } else {
                Value::Set(vals)
            })
        }
        (Type::Tuple(ets), Json::Array(items)) if ets.len() == items.len() => Ok(Value::Tuple(
            items
                .iter()
                .zip(ets)
                .enumerate()
                .map(|(i, (x, t))| from_plain_json(x, t, &path.with(PathStep::Index(i as i64))))
                .collect::<Result<_, _>>()?,
        )),
        (Type::Map(et), Json::Object(m)) => Ok(Value::Map(
            m.iter()
                .map(|(k, x)| {
                    Ok((
                        k.clone(),
                        from_plain_json(x, et, &path.with(PathStep::Key(k.clone())))?,
                    ))
                })
                .collect::<Result<_, ValueError>>()?,
        )),
        (Type::Object(ot), Json::Object(m)) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, x) in m {
                let Some(at) = ot.attrs.get(k) else {
                    return Err(ValueError {
                        path: path.clone(),
                        message: format!("field {k:?} is not an attribute of the schema"),
                    });
                };
                out.insert(
                    k.clone(),
                    from_plain_json(x, at, &path.with(PathStep::Attr(k.clone())))?,
                );
            }
            for k in ot.attrs.keys() {
                out.entry(k.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
        _ => codec::decode_json(j, ty, Default::default()).map_err(|e| ValueError {
            path: path.clone(),
            message: e.message,
        }),
    }
}

fn infer_json_type(j: &Json) -> Type {
    match j {
        Json::Null => Type::Dynamic,
        Json::Bool(_) => Type::Bool,
        Json::Number(_) => Type::Number,
        Json::String(_) => Type::String,
        Json::Array(xs) => Type::Tuple(xs.iter().map(infer_json_type).collect()),
        Json::Object(m) => Type::Object(ObjectType {
            attrs: m
                .iter()
                .map(|(k, v)| (k.clone(), infer_json_type(v)))
                .collect(),
            optional: Default::default(),
        }),
    }
}

impl Value {
    /// Deserialize a wholly-known value into a Rust type (fails with the path of the first
    /// unknown; use [`Value::unknown_as_null`] first to treat unknowns as absent).
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T, TypedError> {
        let j = to_plain_json(self, &AttributePath::root())?;
        Ok(serde_json::from_value(j)?)
    }

    /// Serialize a Rust value into a Value of type `ty`. Fields that are not attributes of
    /// the type are errors (with their path); absent attributes become null.
    pub fn from_typed<T: Serialize>(t: &T, ty: &Type) -> Result<Value, TypedError> {
        let j = serde_json::to_value(t)?;
        Ok(from_plain_json(&j, ty, &AttributePath::root())?)
    }
}

impl Schema {
    /// Deserialize a value of this schema into its Rust type.
    pub fn to_typed<T: DeserializeOwned>(&self, v: &Value) -> Result<T, TypedError> {
        v.to_typed()
    }
    /// Serialize a Rust value into a value of this schema.
    pub fn from_typed<T: Serialize>(&self, t: &T) -> Result<Value, TypedError> {
        Value::from_typed(t, &self.implied_type())
    }
}

impl From<&Number> for Json {
    fn from(n: &Number) -> Json {
        serde_json::from_str::<serde_json::Number>(&n.to_plain_string())
            .map(Json::Number)
            .unwrap_or(Json::Null)
    }
}

/// Compare a serialized sample against a type: every attribute must be present and
/// non-null, every field must be an attribute, collections must be non-empty.
fn check_shape(j: &Json, ty: &Type, path: &AttributePath, problems: &mut Vec<String>) {
    if j.is_null() {
        problems.push(format!(
            "{path}: is null (the sample must be fully populated)"
        ));
        return;
    }
    match (ty, j) {
        (Type::Object(ot), Json::Object(m)) => {
            for k in ot.attrs.keys() {
                if !m.contains_key(k) {
                    let p = path.with(PathStep::Attr(k.clone()));
                    problems.push(format!("{p}: schema attribute missing from the Rust type"));
                }
            }
            for (k, x) in m {
                let p = path.with(PathStep::Attr(k.clone()));
                match ot.attrs.get(k) {
                    Some(at) => check_shape(x, at, &p, problems),
                    None => problems.push(format!("{p}: Rust field is not a schema attribute")),
                }
            }
        }
        (Type::List(et) | Type::Set(et), Json::Array(xs)) => {
            if xs.is_empty() {
                problems.push(format!(
                    "{path}: empty collection (populate at least one element)"
                ));
            }
            for (i, x) in xs.iter().enumerate() {
                check_shape(x, et, &path.with(PathStep::Index(i as i64)), problems);
            }
        }
        (Type::Map(et), Json::Object(m)) => {
            if m.is_empty() {
                problems.push(format!("{path}: empty map (populate at least one entry)"));
            }
            for (k, x) in m {
                check_shape(x, et, &path.with(PathStep::Key(k.clone())), problems);
            }
        }
        (Type::Tuple(ets), Json::Array(xs)) if ets.len() == xs.len() => {
            for (i, (x, t)) in xs.iter().zip(ets).enumerate() {
                check_shape(x, t, &path.with(PathStep::Index(i as i64)), problems);
            }
        }
        (Type::String, Json::String(_))
        | (Type::Number, Json::Number(_))
        | (Type::Bool, Json::Bool(_))
        | (Type::Dynamic, _) => {}
        (t, j) => problems.push(format!("{path}: JSON {j} does not match type {t}")),
    }
}

/// Check that a fully-populated sample of `T` matches `schema` exactly (no missing or extra
/// attributes at any depth) and survives Rust -> Value -> msgpack -> Value -> Rust and the
/// JSON state codec without loss. Returns the list of problems.
pub fn check_roundtrip<T>(schema: &Schema, sample: &T) -> Result<(), Vec<String>>
where
    T: Serialize + DeserializeOwned,
{
    let ty = schema.implied_type();
    let original = serde_json::to_value(sample).map_err(|e| vec![format!("serialize: {e}")])?;
    let mut problems = Vec::new();
    check_shape(&original, &ty, &AttributePath::root(), &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    fn one<X>(r: Result<X, String>) -> Result<X, Vec<String>> {
        r.map_err(|e| vec![e])
    }
    let v = one(Value::from_typed(sample, &ty).map_err(|e| format!("from_typed: {e}")))?;
    let bytes = one(codec::encode_msgpack(&v, &ty).map_err(|e| format!("msgpack encode: {e}")))?;
    let back = one(codec::decode_msgpack(&bytes, &ty).map_err(|e| format!("msgpack decode: {e}")))?;
    let json = one(codec::encode_json_bytes(&back, &ty).map_err(|e| format!("json encode: {e}")))?;
    let back = one(codec::decode_json_bytes(&json, &ty, Default::default())
        .map_err(|e| format!("json decode: {e}")))?;
    let typed: T = one(back.to_typed().map_err(|e| format!("to_typed: {e}")))?;
    let again = one(serde_json::to_value(&typed).map_err(|e| format!("serialize: {e}")))?;
    if again != original {
        return Err(vec![format!(
            "round trip changed the value:\n  before: {original}\n  after:  {again}"
        )]);
    }
    Ok(())
}

/// Test helper: panic with a readable report unless [`check_roundtrip`] passes.
#[track_caller]
pub fn assert_roundtrip<T>(schema: &Schema, sample: &T)
where
    T: Serialize + DeserializeOwned,
{
    if let Err(problems) = check_roundtrip(schema, sample) {
        panic!(
            "schema and Rust type {} drift:\n  - {}",
            std::any::type_name::<T>(),
            problems.join("\n  - ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Attribute, Block, NestedBlock, NestingMode};
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Route {
        host: String,
        port: u16,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct State {
        id: String,
        big: serde_json::Number,
        ratio: f64,
        enabled: bool,
        tags: Vec<String>,
        labels: BTreeMap<String, String>,
        route: Vec<Route>,
        backend: Option<Route>,
    }

    fn schema() -> Schema {
        Schema::new("t")
            .attribute("id", Attribute::string().computed())
            .attribute("big", Attribute::number().required())
            .attribute("ratio", Attribute::number().required())
            .attribute("enabled", Attribute::bool().optional())
            .attribute("tags", Attribute::set_of(Type::String).optional())
            .attribute("labels", Attribute::map_of(Type::String).optional())
            .attribute(
                "backend",
                Attribute::nested(
                    NestingMode::Single,
                    [
                        ("host", Attribute::string().required()),
                        ("port", Attribute::number().required()),
                    ],
                )
                .optional(),
            )
            .block(
                "route",
                NestedBlock::list(
                    Block::new()
                        .attribute("host", Attribute::string().required())
                        .attribute("port", Attribute::number().required()),
                ),
            )
    }

    fn sample() -> State {
        State {
            id: "i".into(),
            big: serde_json::from_str("1180591620717411303425").unwrap(),
            ratio: 0.1,
            enabled: true,
            tags: vec!["a".into()],
            labels: [("k".to_string(), "v".to_string())].into(),
            route: vec![Route {
                host: "h".into(),
                port: 443,
            }],
            backend: Some(Route {
                host: "b".into(),
                port: 80,
            }),
        }
    }

    #[test]
    fn roundtrip_passes_for_matching_type() {
        assert_roundtrip(&schema(), &sample());
        let v = schema().from_typed(&sample()).unwrap();
        assert_eq!(
            v.get_path(&AttributePath::attr("route").then_index(0).then_attr("port"))
                .and_then(Value::as_i64),
            Some(443)
        );
        let back: State = v.to_typed().unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn roundtrip_detects_drift() {
        // schema attribute missing from the type
        let s = schema().attribute("extra", Attribute::string().optional());
        let e = check_roundtrip(&s, &sample()).unwrap_err();
        assert!(
            e.iter()
                .any(|p| p.contains("extra") && p.contains("missing")),
            "{e:?}"
        );
        // Rust field missing from the schema (nested)
        let mut s = schema();
        s.block
            .blocks
            .get_mut("route")
            .unwrap()
            .block
            .attributes
            .remove("port");
        let e = check_roundtrip(&s, &sample()).unwrap_err();
        assert!(e.iter().any(|p| p.contains("route[0].port")), "{e:?}");
        // not fully populated
        let mut partial = sample();
        partial.backend = None;
        let e = check_roundtrip(&schema(), &partial).unwrap_err();
        assert!(
            e.iter()
                .any(|p| p.contains("backend") && p.contains("null")),
            "{e:?}"
        );
        // a type mismatch (bool in the schema, string in Rust)
        let s = schema().attribute("id", Attribute::bool().computed());
        assert!(check_roundtrip(&s, &sample()).is_err());
    }

    #[test]
    fn to_typed_reports_unknown_path() {
        let mut v = schema().from_typed(&sample()).unwrap();
        let p = AttributePath::attr("labels").then_key("k");
        v.set_path(&p, Value::unknown());
        match v.to_typed::<State>() {
            Err(TypedError::Unknown(at)) => assert_eq!(at, p),
            other => panic!("{other:?}"),
        }
        let ok: State = {
            let mut x = v.unknown_as_null();
            x.set_path(&p, "v".into());
            x.to_typed().unwrap()
        };
        assert_eq!(ok, sample());
    }

    #[test]
    fn from_typed_rejects_extra_fields() {
        #[derive(Serialize)]
        struct X {
            a: String,
            zzz: bool,
        }
        let ty = Type::object([("a", Type::String)]);
        let e = Value::from_typed(
            &X {
                a: "x".into(),
                zzz: true,
            },
            &ty,
        )
        .unwrap_err();
        assert!(e.to_string().contains("zzz"), "{e}");
    }
}
