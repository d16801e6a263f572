//! DynamicValue codecs: cty msgpack and cty JSON.
//!
//! msgpack rules (as cty): null = nil; unknown = ext type 0 (`d4 00 00`); refined unknown =
//! ext type 12 (tolerated and re-emitted verbatim); numbers as int when an exact i64, else as
//! float64 when exact, else as a decimal string (so 2^70+1 or 0.1 never lose precision);
//! objects and maps as maps with sorted keys; lists, sets and tuples as arrays; a value at a
//! `dynamic` position as the 2-array `[type JSON bytes, value]`.
//!
//! JSON rules (as cty): no unknowns; numbers as JSON numbers with full precision; a value at
//! a `dynamic` position as `{"value": ..., "type": ...}`.

use std::collections::BTreeMap;

use rmpv::Value as Mp;
use serde_json::Value as Json;

use crate::number::Number;
use crate::path::{AttributePath, PathStep};
use crate::types::Type;
use crate::value::{Refinements, Value};

/// A value could not be decoded/encoded; `path` says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_root() { String::new() } else { format!("{path}: ") })]
pub struct ValueError {
    pub path: AttributePath,
    pub message: String,
}

fn err<T>(path: &AttributePath, message: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError {
        path: path.clone(),
        message: message.into(),
    })
}

const EXT_UNKNOWN: i8 = 0;
const EXT_REFINED_UNKNOWN: i8 = 12;

// ---------------------------------------------------------------------------------------
// msgpack
// ---------------------------------------------------------------------------------------

/// Decode cty msgpack bytes of type `ty`.
pub fn decode_msgpack(bytes: &[u8], ty: &Type) -> Result<Value, ValueError> {
    let root = AttributePath::root();
    let mut rd = bytes;
    let mp = rmpv::decode::read_value(&mut rd).map_err(|e| ValueError {
        path: root.clone(),
        message: format!("invalid msgpack: {e}"),
    })?;
    if !rd.is_empty() {
        return err(&root, "trailing bytes after msgpack value");
    }
    from_mp(&mp, ty, &root)
}

/// Encode a value of type `ty` as cty msgpack.
pub fn encode_msgpack(v: &Value, ty: &Type) -> Result<Vec<u8>, ValueError> {
    let mp = to_mp(v, ty, &AttributePath::root())?;
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &mp).map_err(|e| ValueError {
        path: AttributePath::root(),
        message: format!("msgpack write failed: {e}"),
    })?;
    Ok(out)
}

fn parse_refinements(payload: &[u8]) -> Refinements {
    let mut r = Refinements {
        raw: Some(payload.to_vec()),
        ..Default::default()
    };
    let mut rd = payload;
    if let Ok(Mp::Map(entries)) = rmpv::decode::read_value(&mut rd) {
        for (k, v) in entries {
            match (k.as_i64(), v) {
                // cty encodes "definitely not null" as nullness = false.
                (Some(1), Mp::Boolean(is_null)) => r.not_null = !is_null,
                (Some(2), Mp::String(s)) => r.string_prefix = s.into_str(),
                _ => {}
            }
        }
    }
    r
}

fn unknown_to_mp(r: &Refinements) -> Mp {
    if let Some(raw) = &r.raw {
        return Mp::Ext(EXT_REFINED_UNKNOWN, raw.clone());
    }
    if r.is_empty() {
        return Mp::Ext(EXT_UNKNOWN, vec![0]);
    }
    let mut entries = Vec::new();
    if r.not_null {
        entries.push((Mp::from(1), Mp::Boolean(false)));
    }
    if let Some(p) = &r.string_prefix {
        entries.push((Mp::from(2), Mp::from(p.as_str())));
    }
    let mut payload = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut payload, &Mp::Map(entries));
    Mp::Ext(EXT_REFINED_UNKNOWN, payload)
}

fn mp_str(m: &Mp) -> Option<&str> {
    match m {
        Mp::String(s) => s.as_str(),
        _ => None,
    }
}

fn from_mp(m: &Mp, ty: &Type, path: &AttributePath) -> Result<Value, ValueError> {
    match m {
        Mp::Nil => return Ok(Value::Null),
        // As cty: an extension of length <= 1 is a plain unknown whatever its type code; a
        // longer one must be the refinements extension (ignored at dynamic positions).
        Mp::Ext(_, payload) if payload.len() <= 1 => return Ok(Value::unknown()),
        Mp::Ext(EXT_REFINED_UNKNOWN, _) if *ty == Type::Dynamic => return Ok(Value::unknown()),
        Mp::Ext(EXT_REFINED_UNKNOWN, payload) => {
            return Ok(Value::Unknown(parse_refinements(payload)))
        }
        Mp::Ext(t, _) => return err(path, format!("unsupported msgpack extension type {t}")),
        _ => {}
    }
    match ty {
        Type::Dynamic => {
            let Mp::Array(parts) = m else {
                return err(path, "dynamic value must be a [type, value] array");
            };
            if parts.len() != 2 {
                return err(path, "dynamic value must be a [type, value] array");
            }
            let tj: &[u8] = match &parts[0] {
                Mp::Binary(b) => b,
                Mp::String(s) => s.as_bytes(),
                _ => return err(path, "dynamic value type must be JSON bytes"),
            };
            let t = Type::from_json_bytes(tj).map_err(|e| ValueError {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let inner = from_mp(&parts[1], &t, path)?;
            Ok(Value::Dynamic(t, Box::new(inner)))
        }
        Type::String => match m {
            Mp::String(s) => match s.as_str() {
                Some(s) => Ok(Value::String(s.to_string())),
                None => err(path, "string is not valid UTF-8"),
            },
            _ => err(path, format!("expected string, got {m}")),
        },
        Type::Bool => match m {
            Mp::Boolean(b) => Ok(Value::Bool(*b)),
            _ => err(path, format!("expected bool, got {m}")),
        },
        Type::Number => {
            let n = match m {
                Mp::Integer(i) => {
                    if let Some(i) = i.as_i64() {
                        Number::from(i)
                    } else if let Some(u) = i.as_u64() {
                        Number::from(u)
                    } else {
                        return err(path, "integer out of range");
                    }
                }
                Mp::F64(f) => Number::from_f64(*f).map_or_else(
                    || err(path, "infinite or NaN numbers are not supported"),
                    Ok,
                )?,
                Mp::F32(f) => Number::from_f64(f64::from(*f)).map_or_else(
                    || err(path, "infinite or NaN numbers are not supported"),
                    Ok,
                )?,
                Mp::String(s) => match s.as_str().map(str::parse::<Number>) {
                    Some(Ok(n)) => n,
                    _ => return err(path, format!("invalid number string {m}")),
                },
                _ => return err(path, format!("expected number, got {m}")),
            };
            Ok(Value::Number(n))
        }
        Type::List(et) | Type::Set(et) => {
            let Mp::Array(items) = m else {
                return err(path, format!("expected array for {ty}"));
            };
            let vals = items
                .iter()
                .enumerate()
                .map(|(i, x)| from_mp(x, et, &path.with(PathStep::Index(i as i64))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::List(_)) {
                Value::List(vals)
            } else {
                Value::Set(vals)
            })
        }
        Type::Tuple(ets) => {
            let Mp::Array(items) = m else {
                return err(path, "expected array for tuple");
            };
            if items.len() != ets.len() {
                return err(
                    path,
                    format!("tuple needs {} elements, got {}", ets.len(), items.len()),
                );
            }
            Ok(Value::Tuple(
                items
                    .iter()
                    .zip(ets)
                    .enumerate()
                    .map(|(i, (x, t))| from_mp(x, t, &path.with(PathStep::Index(i as i64))))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Type::Map(et) => {
            let Mp::Map(entries) = m else {
                return err(path, "expected map");
            };
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let Some(k) = mp_str(k) else {
                    return err(path, "map keys must be strings");
                };
                out.insert(
                    k.to_string(),
                    from_mp(v, et, &path.with(PathStep::Key(k.to_string())))?,
                );
            }
            Ok(Value::Map(out))
        }
        Type::Object(ot) => {
            let Mp::Map(entries) = m else {
                return err(path, "expected object");
            };
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let Some(k) = mp_str(k) else {
                    return err(path, "object keys must be strings");
                };
                let Some(at) = ot.attrs.get(k) else {
                    return err(path, format!("unsupported attribute {k:?}"));
                };
                out.insert(
                    k.to_string(),
                    from_mp(v, at, &path.with(PathStep::Attr(k.to_string())))?,
                );
            }
            for k in ot.attrs.keys() {
                out.entry(k.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
    }
}

fn number_to_mp(n: &Number) -> Mp {
    if let Some(i) = n.to_i64() {
        Mp::from(i)
    } else if let Some(f) = n.to_f64_exact() {
        Mp::F64(f)
    } else {
        Mp::from(n.to_plain_string())
    }
}

fn mismatch<T>(v: &Value, ty: &Type, path: &AttributePath) -> Result<T, ValueError> {
    let got = match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::List(_) => "list",
        Value::Set(_) => "set",
        Value::Tuple(_) => "tuple",
        Value::Map(_) => "map",
        Value::Object(_) => "object",
        _ => "value",
    };
    err(path, format!("{got} does not conform to type {ty}"))
}

fn to_mp(v: &Value, ty: &Type, path: &AttributePath) -> Result<Mp, ValueError> {
    if *ty == Type::Dynamic {
        return match v {
            Value::Null => Ok(Mp::Nil),
            // cty's DynamicVal never carries refinements.
            Value::Unknown(_) => Ok(unknown_to_mp(&Refinements::default())),
            Value::Dynamic(t, inner) if *t == Type::Dynamic => to_mp(inner, t, path),
            Value::Dynamic(t, inner) => Ok(Mp::Array(vec![
                Mp::Binary(t.to_json_bytes()),
                to_mp(inner, t, path)?,
            ])),
            other => {
                let t = other.infer_type();
                Ok(Mp::Array(vec![
                    Mp::Binary(t.to_json_bytes()),
                    to_mp(other, &t, path)?,
                ]))
            }
        };
    }
    match (v, ty) {
        (Value::Dynamic(_, inner), _) => to_mp(inner, ty, path),
        (Value::Null, _) => Ok(Mp::Nil),
        (Value::Unknown(r), _) => Ok(unknown_to_mp(r)),
        (Value::String(s), Type::String) => Ok(Mp::from(s.as_str())),
        (Value::Bool(b), Type::Bool) => Ok(Mp::Boolean(*b)),
        (Value::Number(n), Type::Number) => Ok(number_to_mp(n)),
        (Value::List(items), Type::List(et)) | (Value::Set(items), Type::Set(et)) => Ok(Mp::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| to_mp(x, et, &path.with(PathStep::Index(i as i64))))
                .collect::<Result<_, _>>()?,
        )),
        (Value::Tuple(items), Type::Tuple(ets)) => {
            if items.len() != ets.len() {
                return err(path, "tuple length does not match its type");
            }
            Ok(Mp::Array(
                items
                    .iter()
                    .zip(ets)
                    .enumerate()
                    .map(|(i, (x, t))| to_mp(x, t, &path.with(PathStep::Index(i as i64))))
                    .collect::<Result<_, _>>()?,
            ))
        }
        (Value::Map(m), Type::Map(et)) => Ok(Mp::Map(
            m.iter()
                .map(|(k, x)| {
                    Ok((
                        Mp::from(k.as_str()),
                        to_mp(x, et, &path.with(PathStep::Key(k.clone())))?,
                    ))
                })
                .collect::<Result<_, ValueError>>()?,
        )),
        (Value::Object(m), Type::Object(ot)) => {
            if let Some(extra) = m.keys().find(|k| !ot.attrs.contains_key(*k)) {
                return err(path, format!("unsupported attribute {extra:?}"));
            }
            let mut entries = Vec::with_capacity(ot.attrs.len());
            for (k, at) in &ot.attrs {
                let p = path.with(PathStep::Attr(k.clone()));
                let mv = match m.get(k) {
                    Some(x) => to_mp(x, at, &p)?,
                    None => Mp::Nil,
                };
                entries.push((Mp::from(k.as_str()), mv));
            }
            Ok(Mp::Map(entries))
        }
        (v, ty) => mismatch(v, ty, path),
    }
}

// ---------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------

/// Options for JSON decoding.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonDecodeOptions {
    /// Silently drop object attributes the type does not have (used for stored state, which
    /// may hold attributes removed from the schema).
    pub ignore_undefined_attributes: bool,
}

/// Decode cty JSON text of type `ty`.
pub fn decode_json_bytes(
    bytes: &[u8],
    ty: &Type,
    opts: JsonDecodeOptions,
) -> Result<Value, ValueError> {
    let j: Json = serde_json::from_slice(bytes).map_err(|e| ValueError {
        path: AttributePath::root(),
        message: format!("invalid JSON: {e}"),
    })?;
    decode_json(&j, ty, opts)
}

/// Decode a parsed cty JSON value of type `ty`.
pub fn decode_json(j: &Json, ty: &Type, opts: JsonDecodeOptions) -> Result<Value, ValueError> {
    from_json(j, ty, &AttributePath::root(), opts)
}

/// Encode as cty JSON (fails on unknown values).
pub fn encode_json(v: &Value, ty: &Type) -> Result<Json, ValueError> {
    to_json(v, ty, &AttributePath::root())
}

/// Encode as cty JSON bytes.
pub fn encode_json_bytes(v: &Value, ty: &Type) -> Result<Vec<u8>, ValueError> {
    Ok(encode_json(v, ty)?.to_string().into_bytes())
}

fn from_json(
    j: &Json,
    ty: &Type,
    path: &AttributePath,
    opts: JsonDecodeOptions,
) -> Result<Value, ValueError> {
    if j.is_null() {
        return Ok(Value::Null);
    }
    match ty {
        Type::Dynamic => {
            let (Some(tj), Some(vj)) = (j.get("type"), j.get("value")) else {
                return err(
                    path,
                    "dynamic value must be an object with \"type\" and \"value\"",
                );
            };
            let t = Type::from_json(tj).map_err(|e| ValueError {
                path: path.clone(),
                message: e.to_string(),
            })?;
            Ok(Value::Dynamic(
                t.clone(),
                Box::new(from_json(vj, &t, path, opts)?),
            ))
        }
        Type::String => match j {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Number(n) => Ok(Value::String(n.to_string())),
            Json::Bool(b) => Ok(Value::String(b.to_string())),
            _ => err(path, "expected string"),
        },
        Type::Bool => match j {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::String(s) if s == "true" => Ok(Value::Bool(true)),
            Json::String(s) if s == "false" => Ok(Value::Bool(false)),
            _ => err(path, "expected bool"),
        },
        Type::Number => {
            let text = match j {
                Json::Number(n) => n.to_string(),
                Json::String(s) => s.clone(),
                _ => return err(path, "expected number"),
            };
            text.parse::<Number>()
                .map(Value::Number)
                .map_err(|e| ValueError {
                    path: path.clone(),
                    message: e.to_string(),
                })
        }
        Type::List(et) | Type::Set(et) => {
            let Json::Array(items) = j else {
                return err(path, format!("expected array for {ty}"));
            };
            let vals = items
                .iter()
                .enumerate()
                .map(|(i, x)| from_json(x, et, &path.with(PathStep::Index(i as i64)), opts))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if matches!(ty, Type::List(_)) {
                Value::List(vals)
            } else {
                Value::Set(vals)
            })
        }
        Type::Tuple(ets) => {
            let Json::Array(items) = j else {
                return err(path, "expected array for tuple");
            };
            if items.len() != ets.len() {
                return err(
                    path,
                    format!("tuple needs {} elements, got {}", ets.len(), items.len()),
                );
            }
            Ok(Value::Tuple(
                items
                    .iter()
                    .zip(ets)
                    .enumerate()
                    .map(|(i, (x, t))| from_json(x, t, &path.with(PathStep::Index(i as i64)), opts))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Type::Map(et) => {
            let Json::Object(m) = j else {
                return err(path, "expected JSON object for map");
            };
            Ok(Value::Map(
                m.iter()
                    .map(|(k, x)| {
                        Ok((
                            k.clone(),
                            from_json(x, et, &path.with(PathStep::Key(k.clone())), opts)?,
                        ))
                    })
                    .collect::<Result<_, ValueError>>()?,
            ))
        }
        Type::Object(ot) => {
            let Json::Object(m) = j else {
                return err(path, "expected JSON object");
            };
            let mut out = BTreeMap::new();
            for (k, x) in m {
                match ot.attrs.get(k) {
                    Some(at) => {
                        out.insert(
                            k.clone(),
                            from_json(x, at, &path.with(PathStep::Attr(k.clone())), opts)?,
                        );
                    }
                    None if opts.ignore_undefined_attributes => {}
                    None => return err(path, format!("unsupported attribute {k:?}")),
                }
            }
            for k in ot.attrs.keys() {
                out.entry(k.clone()).or_insert(Value::Null);
            }
            Ok(Value::Object(out))
        }
    }
}

fn number_to_json(n: &Number, path: &AttributePath) -> Result<Json, ValueError> {
    serde_json::from_str::<serde_json::Number>(&n.to_plain_string())
        .map(Json::Number)
        .map_err(|e| ValueError {
            path: path.clone(),
            message: format!("number not representable in JSON: {e}"),
        })
}

fn to_json(v: &Value, ty: &Type, path: &AttributePath) -> Result<Json, ValueError> {
    match (v, ty) {
        (Value::Unknown(_), _) => err(path, "unknown values cannot be encoded as JSON"),
        (Value::Null, _) => Ok(Json::Null),
        (v, Type::Dynamic) => {
            let (t, inner) = match v {
                Value::Dynamic(t, inner) => (t.clone(), inner.as_ref()),
                other => (other.infer_type(), other),
            };
            if inner.is_unknown() {
                return err(path, "unknown values cannot be encoded as JSON");
            }
            let mut o = serde_json::Map::new();
            o.insert("value".into(), to_json(inner, &t, path)?);
            o.insert("type".into(), t.to_json());
            Ok(Json::Object(o))
        }
        (Value::Dynamic(_, inner), _) => to_json(inner, ty, path),
        (Value::String(s), Type::String) => Ok(Json::String(s.clone())),
        (Value::Bool(b), Type::Bool) => Ok(Json::Bool(*b)),
        (Value::Number(n), Type::Number) => number_to_json(n, path),
        (Value::List(items), Type::List(et)) | (Value::Set(items), Type::Set(et)) => {
            Ok(Json::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| to_json(x, et, &path.with(PathStep::Index(i as i64))))
                    .collect::<Result<_, _>>()?,
            ))
        }
        (Value::Tuple(items), Type::Tuple(ets)) if items.len() == ets.len() => Ok(Json::Array(
            items
                .iter()
                .zip(ets)
                .enumerate()
                .map(|(i, (x, t))| to_json(x, t, &path.with(PathStep::Index(i as i64))))
                .collect::<Result<_, _>>()?,
        )),
        (Value::Map(m), Type::Map(et)) => Ok(Json::Object(
            m.iter()
                .map(|(k, x)| {
                    Ok((
                        k.clone(),
                        to_json(x, et, &path.with(PathStep::Key(k.clone())))?,
                    ))
                })
                .collect::<Result<_, ValueError>>()?,
        )),
        (Value::Object(m), Type::Object(ot)) => {
            if let Some(extra) = m.keys().find(|k| !ot.attrs.contains_key(*k)) {
                return err(path, format!("unsupported attribute {extra:?}"));
            }
            let mut o = serde_json::Map::new();
            for (k, at) in &ot.attrs {
                let p = path.with(PathStep::Attr(k.clone()));
                let jv = match m.get(k) {
                    Some(x) => to_json(x, at, &p)?,
                    None => Json::Null,
                };
                o.insert(k.clone(), jv);
            }
            Ok(Json::Object(o))
        }
        (v, ty) => mismatch(v, ty, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ObjectType;

    fn obj_type() -> Type {
        let mut o = ObjectType::default();
        o.attrs.insert("name".into(), Type::String);
        o.attrs.insert("count".into(), Type::Number);
        o.attrs.insert("enabled".into(), Type::Bool);
        o.attrs.insert("tags".into(), Type::set(Type::String));
        o.attrs.insert("labels".into(), Type::map(Type::String));
        o.attrs.insert(
            "routes".into(),
            Type::list(Type::object([
                ("host", Type::String),
                ("port", Type::Number),
            ])),
        );
        o.attrs.insert("any".into(), Type::Dynamic);
        o.attrs
            .insert("pair".into(), Type::Tuple(vec![Type::String, Type::Number]));
        Type::Object(o)
    }

    fn n(s: &str) -> Value {
        Value::Number(s.parse().unwrap())
    }

    fn samples() -> Vec<Value> {
        vec![
            Value::Null,
            Value::unknown(),
            Value::object([
                ("name", Value::from("x")),
                ("count", n("1180591620717411303425")),
                ("enabled", Value::Bool(true)),
                ("tags", Value::Set(vec!["a".into(), "b".into()])),
                (
                    "labels",
                    Value::Map([("k".to_string(), Value::unknown())].into()),
                ),
                (
                    "routes",
                    Value::List(vec![
                        Value::object([("host", "h".into()), ("port", n("0.1"))]),
                        Value::object([("host", Value::unknown()), ("port", Value::Null)]),
                    ]),
                ),
                (
                    "any",
                    Value::Dynamic(Type::list(Type::String), Box::new(Value::List(vec![]))),
                ),
                ("pair", Value::Tuple(vec!["p".into(), n("-7")])),
            ]),
            Value::object([
                ("name", Value::Null),
                ("count", n("-9223372036854775809")),
                ("enabled", Value::unknown()),
                ("tags", Value::unknown()),
                ("labels", Value::Null),
                ("routes", Value::List(vec![])),
                ("any", Value::unknown()),
                ("pair", Value::Null),
            ]),
        ]
    }

    #[test]
    fn msgpack_roundtrips() {
        let t = obj_type();
        for v in samples() {
            let b = encode_msgpack(&v, &t).unwrap();
            let back = decode_msgpack(&b, &t).unwrap();
            assert_eq!(back, v, "msgpack round trip");
        }
    }

    #[test]
    fn json_roundtrips_known_values() {
        let t = obj_type();
        let mut v = samples()[2].clone();
        v = v.map_leaves(&|x| {
            if x.is_unknown() {
                Some(Value::from("u"))
            } else {
                None
            }
        });
        // labels had an unknown string -> "u"; host too.
        let j = encode_json(&v, &t).unwrap();
        let back = decode_json(&j, &t, JsonDecodeOptions::default()).unwrap();
        assert_eq!(back, v);
        let text = j.to_string();
        assert!(text.contains("1180591620717411303425"), "{text}");
        assert!(text.contains(r#""port":0.1"#), "{text}");
        assert!(
            text.contains(r#""any":{"value":[],"type":["list","string"]}"#),
            "{text}"
        );
        assert!(encode_json(&Value::unknown(), &Type::String).is_err());
    }

    #[test]
    fn number_wire_forms() {
        let enc = |s: &str| encode_msgpack(&n(s), &Type::Number).unwrap();
        assert_eq!(enc("1"), vec![0x01]);
        assert_eq!(enc("-1"), vec![0xff]);
        // 2^70 is an exact float64
        let mut f = vec![0xcb];
        f.extend_from_slice(&2f64.powi(70).to_be_bytes());
        assert_eq!(enc("1180591620717411303424"), f);
        // 2^70+1 is not: decimal string
        let s = enc("1180591620717411303425");
        assert_eq!(s[0], 0xb6, "fixstr of 22 chars");
        assert_eq!(&s[1..], b"1180591620717411303425");
        assert_eq!(enc("0.1")[1..], *b"0.1");
        assert_eq!(enc("0.5")[0], 0xcb);
        // decoding every form
        for (bytes, want) in [
            (vec![0x2a], "42"),
            (
                vec![0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                "18446744073709551615",
            ),
            (vec![0xa3, b'0', b'.', b'1'], "0.1"),
            (vec![0xa3, b'1', b'e', b'3'], "1000"),
        ] {
            assert_eq!(decode_msgpack(&bytes, &Type::Number).unwrap(), n(want));
        }
        assert!(decode_msgpack(&[0xa3, b'a', b'b', b'c'], &Type::Number).is_err());
    }

    #[test]
    fn unknown_and_refined_unknown() {
        assert_eq!(
            encode_msgpack(&Value::unknown(), &Type::String).unwrap(),
            vec![0xd4, 0, 0]
        );
        // refined: not null + prefix "ab"
        let mut payload = Vec::new();
        rmpv::encode::write_value(
            &mut payload,
            &Mp::Map(vec![
                (Mp::from(1), Mp::Boolean(false)),
                (Mp::from(2), Mp::from("ab")),
            ]),
        )
        .unwrap();
        let mut wire = Vec::new();
        rmpv::encode::write_value(&mut wire, &Mp::Ext(12, payload.clone())).unwrap();
        let v = decode_msgpack(&wire, &Type::String).unwrap();
        match &v {
            Value::Unknown(r) => {
                assert!(r.not_null);
                assert_eq!(r.string_prefix.as_deref(), Some("ab"));
            }
            other => panic!("expected unknown, got {other:?}"),
        }
        assert!(v.is_unknown());
        assert_eq!(encode_msgpack(&v, &Type::String).unwrap(), wire);
        // an unknown we refine ourselves is encoded the cty way (nullness=false)
        let mine = Value::Unknown(Refinements {
            not_null: true,
            string_prefix: Some("ab".into()),
            raw: None,
        });
        assert_eq!(encode_msgpack(&mine, &Type::String).unwrap(), wire);
        // any 0/1-byte extension is a plain unknown; longer non-12 extensions are refused
        assert!(decode_msgpack(&[0xd4, 0x05, 0x00], &Type::String)
            .unwrap()
            .is_unknown());
        assert!(decode_msgpack(&[0xd5, 0x05, 0x00, 0x00], &Type::String).is_err());
        // refinements at a dynamic position are ignored, as cty does
        assert_eq!(
            decode_msgpack(&wire, &Type::Dynamic).unwrap(),
            Value::unknown()
        );
        // garbage refinement payloads are tolerated
        let mut wire2 = Vec::new();
        rmpv::encode::write_value(&mut wire2, &Mp::Ext(12, vec![0xc1])).unwrap();
        assert!(decode_msgpack(&wire2, &Type::Number).unwrap().is_unknown());
        // nested unknowns inside a dynamic list
        let t = Type::Dynamic;
        let v = Value::Dynamic(
            Type::list(Type::String),
            Box::new(Value::List(vec![Value::unknown(), "x".into()])),
        );
        assert_eq!(
            decode_msgpack(&encode_msgpack(&v, &t).unwrap(), &t).unwrap(),
            v
        );
    }

    #[test]
    fn dynamic_wire_form() {
        let v = Value::Dynamic(Type::String, Box::new("hi".into()));
        let b = encode_msgpack(&v, &Type::Dynamic).unwrap();
        let mut rd = &b[..];
        let mp = rmpv::decode::read_value(&mut rd).unwrap();
        assert_eq!(
            mp,
            Mp::Array(vec![Mp::Binary(br#""string""#.to_vec()), Mp::from("hi")])
        );
        // inferred type for an untyped value at a dynamic position
        let b = encode_msgpack(&Value::from(5), &Type::Dynamic).unwrap();
        assert_eq!(
            decode_msgpack(&b, &Type::Dynamic).unwrap(),
            Value::Dynamic(Type::Number, Box::new(Value::from(5)))
        );
        assert_eq!(
            encode_msgpack(&Value::Null, &Type::Dynamic).unwrap(),
            vec![0xc0]
        );
    }

    #[test]
    fn errors_carry_paths() {
        let t = obj_type();
        let bad = Value::object([(
            "routes",
            Value::List(vec![Value::object([("host", Value::from(3))])]),
        )]);
        let e = encode_msgpack(&bad, &t).unwrap_err();
        assert_eq!(
            e.path,
            AttributePath::attr("routes")
                .then_index(0)
                .then_attr("host")
        );
        let e = encode_msgpack(&Value::object([("nope", Value::Null)]), &t).unwrap_err();
        assert!(e.message.contains("nope"));
        let j: Json = serde_json::json!({"labels": {"a": [1]}});
        let e = decode_json(&j, &t, JsonDecodeOptions::default()).unwrap_err();
        assert_eq!(e.path, AttributePath::attr("labels").then_key("a"));
        assert!(
            decode_msgpack(&[0x01, 0x02], &Type::Number).is_err(),
            "trailing bytes"
        );
    }

    #[test]
    fn json_state_decoding_is_lenient_when_asked() {
        let t = Type::object([("a", Type::String), ("b", Type::Number)]);
        let j = serde_json::json!({"a": "x", "removed": true});
        assert!(decode_json(&j, &t, JsonDecodeOptions::default()).is_err());
        let v = decode_json(
            &j,
            &t,
            JsonDecodeOptions {
                ignore_undefined_attributes: true,
            },
        )
        .unwrap();
        assert_eq!(v, Value::object([("a", "x".into()), ("b", Value::Null)]));
        // big numbers survive JSON both ways
        let big = br#"{"a":null,"b":123456789012345678901234567890.000000000000000000001}"#;
        let v = decode_json_bytes(big, &t, JsonDecodeOptions::default()).unwrap();
        assert_eq!(
            v.get_attr("b")
                .and_then(Value::as_number)
                .map(|n| n.to_string()),
            Some("123456789012345678901234567890.000000000000000000001".to_string())
        );
        assert_eq!(encode_json_bytes(&v, &t).unwrap(), big.to_vec());
    }

    /// Tiny deterministic PRNG for property-style tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn gen_type(r: &mut Rng, depth: u32) -> Type {
        let k = if depth == 0 { r.below(4) } else { r.below(10) };
        match k {
            0 => Type::String,
            1 => Type::Number,
            2 => Type::Bool,
            3 => Type::Dynamic,
            4 => Type::list(gen_type(r, depth - 1)),
            5 => Type::set(gen_type(r, depth - 1)),
            6 => Type::map(gen_type(r, depth - 1)),
            7 => Type::Tuple((0..r.below(3)).map(|_| gen_type(r, depth - 1)).collect()),
            _ => Type::object((0..r.below(4)).map(|i| (format!("a{i}"), gen_type(r, depth - 1)))),
        }
    }

    fn gen_value(r: &mut Rng, t: &Type, depth: u32) -> Value {
        match r.below(12) {
            0 => return Value::Null,
            1 => return Value::unknown(),
            _ => {}
        }
        match t {
            Type::String => Value::String(format!("s{}", r.below(1000))),
            Type::Bool => Value::Bool(r.below(2) == 1),
            Type::Number => {
                let s = match r.below(4) {
                    0 => format!("{}", r.next() as i64),
                    1 => format!("{}{}", r.next(), r.next()),
                    2 => format!("-{}.{}", r.below(1000), r.below(1000) + 1),
                    _ => format!("{}", f64::from_bits(r.next() >> 2)),
                };
                Value::Number(s.parse().unwrap())
            }
            Type::Dynamic => {
                // A concrete type (a `Dynamic(dynamic, ..)` wrapper normalises away).
                let mut inner_t = gen_type(r, depth.min(1));
                while inner_t == Type::Dynamic {
                    inner_t = gen_type(r, depth.min(1));
                }
                let inner = gen_value(r, &inner_t, depth.min(1));
                Value::Dynamic(inner_t, Box::new(inner))
            }
            Type::List(e) => Value::List((0..r.below(3)).map(|_| gen_value(r, e, depth)).collect()),
            Type::Set(e) => Value::Set((0..r.below(3)).map(|_| gen_value(r, e, depth)).collect()),
            Type::Map(e) => Value::Map(
                (0..r.below(3))
                    .map(|i| (format!("k{i}"), gen_value(r, e, depth)))
                    .collect(),
            ),
            Type::Tuple(es) => Value::Tuple(es.iter().map(|e| gen_value(r, e, depth)).collect()),
            Type::Object(o) => Value::Object(
                o.attrs
                    .iter()
                    .map(|(k, e)| (k.clone(), gen_value(r, e, depth)))
                    .collect(),
            ),
        }
    }

    #[test]
    fn property_style_value_roundtrips() {
        let mut r = Rng(0x2545_F491_4F6C_DD1D);
        let mut json_checked = 0;
        for _ in 0..2000 {
            let t = gen_type(&mut r, 3);
            let v = gen_value(&mut r, &t, 3);
            let b = encode_msgpack(&v, &t).unwrap_or_else(|e| panic!("{t}: {v:?}: {e}"));
            let back = decode_msgpack(&b, &t).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(back, v, "msgpack round trip of {t}");
            if v.is_wholly_known() {
                let j = encode_json(&v, &t).unwrap();
                let back = decode_json(&j, &t, Default::default()).unwrap();
                assert_eq!(back, v, "JSON round trip of {t}: {j}");
                json_checked += 1;
            }
        }
        assert!(json_checked > 200, "{json_checked}");
    }

    #[test]
    fn property_style_number_roundtrips() {
        // Deterministic pseudo-random numbers of many shapes through both codecs.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..500 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = format!("{x}{}", x.rotate_left(17));
            let scale = (x % 40) as usize;
            let s = if scale > 0 && scale < digits.len() {
                format!(
                    "{}.{}",
                    &digits[..digits.len() - scale],
                    &digits[digits.len() - scale..]
                )
            } else {
                digits.clone()
            };
            let s = if x.is_multiple_of(3) {
                format!("-{s}")
            } else {
                s
            };
            let v = n(&s);
            let b = encode_msgpack(&v, &Type::Number).unwrap();
            assert_eq!(decode_msgpack(&b, &Type::Number).unwrap(), v, "{s}");
            let j = encode_json(&v, &Type::Number).unwrap();
            assert_eq!(
                decode_json(&j, &Type::Number, Default::default()).unwrap(),
                v,
                "{s}"
            );
            let f = f64::from_bits(x);
            if let Some(fv) = Number::from_f64(f) {
                let b = encode_msgpack(&Value::Number(fv.clone()), &Type::Number).unwrap();
                assert_eq!(
                    decode_msgpack(&b, &Type::Number).unwrap(),
                    Value::Number(fv)
                );
            }
        }
    }
}
