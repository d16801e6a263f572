//! Lenient readers for PVE JSON (numbers sometimes arrive as strings, booleans as 0/1).

use serde_json::Value;

/// A string, or a number rendered as a string.
pub fn v_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        _ => None,
    }
}

/// An unsigned integer, from a number or a numeric string.
pub fn v_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A signed integer, from a number or a numeric string.
pub fn v_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean from `true`/`false`, `1`/`0` or `"1"`/`"0"`.
pub fn v_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|i| i != 0),
        Value::String(s) => match s.as_str() {
            "1" | "true" | "on" | "yes" => Some(true),
            "0" | "false" | "off" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Field accessor helpers on objects.
pub fn f_str(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(v_str)
}
/// Unsigned integer field.
pub fn f_u64(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(v_u64)
}
/// Signed integer field.
pub fn f_i64(v: &Value, k: &str) -> Option<i64> {
    v.get(k).and_then(v_i64)
}
/// Boolean field.
pub fn f_bool(v: &Value, k: &str) -> Option<bool> {
    v.get(k).and_then(v_bool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_numbers_and_bools() {
        assert_eq!(v_u64(&json!(5)), Some(5));
        assert_eq!(v_u64(&json!("17")), Some(17));
        assert_eq!(v_u64(&json!("x")), None);
        assert_eq!(v_i64(&json!(-3)), Some(-3));
        assert_eq!(v_bool(&json!(1)), Some(true));
        assert_eq!(v_bool(&json!("0")), Some(false));
        assert_eq!(v_str(&json!(100)), Some("100".into()));
        assert_eq!(f_str(&json!({"a": "b"}), "a"), Some("b".into()));
    }
}
