//! YAML value helpers and YAML <-> JSON conversion without going through serde_json's
//! `arbitrary_precision` number representation.

use serde_yaml_ng::{Mapping, Number, Value};

/// A mapping from `(key, value)` pairs, keeping their order.
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(Value::String(k.to_string()), v);
    }
    Value::Mapping(m)
}

/// A string value.
pub fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

/// A sequence of strings.
pub fn strings<I, S>(items: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Value::Sequence(items.into_iter().map(|x| Value::String(x.into())).collect())
}

/// Looks up `key` in a mapping value.
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Mapping(m) => m.get(key),
        _ => None,
    }
}

/// The string at `key`, if any.
pub fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key).and_then(Value::as_str)
}

/// Converts a YAML value to JSON. Fails on non-string map keys and tagged values.
pub fn to_json(v: &Value) -> Result<serde_json::Value, String> {
    Ok(match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(serde_json::Value::Number)
                    .ok_or_else(|| format!("number {n} can't be represented in JSON"))?
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => {
            serde_json::Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Value::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err("map keys must be strings".to_string()),
                };
                out.insert(key, to_json(v)?);
            }
            serde_json::Value::Object(out)
        }
        Value::Tagged(_) => return Err("YAML tags are not supported".to_string()),
    })
}

/// Converts a JSON value to YAML.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                match n.as_f64() {
                    Some(f) => Value::Number(Number::from(f)),
                    None => Value::String(n.to_string()),
                }
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Sequence(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            let mut m = Mapping::new();
            for (k, v) in o {
                m.insert(Value::String(k.clone()), from_json(v));
            }
            Value::Mapping(m)
        }
    }
}

/// Renders documents as a multi-document YAML stream (`---` between documents).
pub fn to_multidoc(docs: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = serde_yaml_ng::to_string(d).map_err(|e| e.to_string())?;
        out.push_str(&text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

/// Parses a multi-document YAML stream, skipping empty documents.
pub fn parse_multidoc(text: &str) -> Result<Vec<Value>, String> {
    let mut docs = Vec::new();
    for de in serde_yaml_ng::Deserializer::from_str(text) {
        let v = <Value as serde::Deserialize>::deserialize(de).map_err(|e| e.to_string())?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_multidoc() {
        let y: Value = serde_yaml_ng::from_str("a: 1\nb: [true, x, 2.5]\nc: {d: null}\n").unwrap();
        let j = to_json(&y).unwrap();
        assert_eq!(j["a"], serde_json::json!(1));
        assert_eq!(from_json(&j), y);
        let docs = parse_multidoc("a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        let text = to_multidoc(&docs).unwrap();
        assert_eq!(text, "a: 1\n---\nb: 2\n");
    }
}
