//! Property strings (`key=value,key=value` with a default key), as `PVE::JSONSchema`
//! parses and prints them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{check_scalar, truthy};

/// A parsed property string: canonical keys (aliases resolved) to values.
pub type PropertyString = BTreeMap<String, String>;

fn default_key(fmt: &Map<String, Value>) -> Option<&str> {
    fmt.iter()
        .find(|(_, v)| truthy(v.get("default_key")).unwrap_or(false))
        .map(|(k, _)| k.as_str())
}

/// Parse a property string against a format description (the `format` object).
pub fn parse_property_string(
    fmt: &Map<String, Value>,
    input: &str,
) -> Result<PropertyString, String> {
    let mut res = PropertyString::new();
    for part in input.split(',') {
        if part.trim().is_empty() {
            continue;
        }
        if let Some((k, v)) = part.split_once('=') {
            if v.is_empty() {
                return Err(format!("missing value for key '{k}'"));
            }
            let mut key = k.to_string();
            let mut value = v.to_string();
            if let Some(entry) = fmt.get(k) {
                if let Some(alias) = entry.get("alias").and_then(Value::as_str) {
                    if let Some(key_alias) = entry.get("keyAlias").and_then(Value::as_str) {
                        if res.contains_key(key_alias) {
                            return Err(format!(
                                "duplicate key in comma-separated list property: {key_alias}"
                            ));
                        }
                        res.insert(key_alias.to_string(), k.to_string());
                    }
                    key = alias.to_string();
                }
            } else {
                return Err(format!("invalid key in comma-separated list property: {k}"));
            }
            if res.contains_key(&key) {
                return Err(format!(
                    "duplicate key in comma-separated list property: {key}"
                ));
            }
            if key.is_empty() {
                return Err("empty key".into());
            }
            value = value.trim_end().to_string();
            res.insert(key, value);
        } else {
            let Some(dk) = default_key(fmt) else {
                return Err("value without key, but schema does not define a default key".into());
            };
            if res.contains_key(dk) {
                return Err(format!(
                    "duplicate key in comma-separated list property: {dk}"
                ));
            }
            res.insert(dk.to_string(), part.to_string());
        }
    }
    Ok(res)
}

/// Parse and check every key's value against its schema, and required keys.
pub fn validate_property_string(fmt: &Map<String, Value>, input: &str) -> Result<(), String> {
    let parsed = parse_property_string(fmt, input)?;
    let mut errs = Vec::new();
    for (k, v) in &parsed {
        let Some(schema) = fmt.get(k) else {
            errs.push(format!(
                "{k}: property is not defined in schema and the schema does not allow additional properties"
            ));
            continue;
        };
        if let Err(e) = check_scalar(schema, v) {
            errs.push(format!("{k}: {e}"));
        }
    }
    for (k, schema) in fmt {
        if schema.get("alias").is_some() {
            continue;
        }
        let optional = truthy(schema.get("optional")).unwrap_or(false);
        if !optional && !parsed.contains_key(k) {
            errs.push(format!("{k}: property is missing and it is not optional"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("format error\n{}", errs.join("\n")))
    }
}

/// Print a property string the way PVE writes it: the default key's bare value first, then
/// the other keys sorted. `skip` keys are left out.
pub fn print_property_string(
    fmt: &Map<String, Value>,
    values: &PropertyString,
    skip: &[&str],
) -> String {
    let dk = default_key(fmt);
    let mut parts = Vec::new();
    if let Some(dk) = dk {
        if let Some(v) = values.get(dk) {
            if !skip.contains(&dk) {
                parts.push(v.clone());
            }
        }
    }
    for (k, v) in values {
        if Some(k.as_str()) == dk || skip.contains(&k.as_str()) {
            continue;
        }
        parts.push(format!("{k}={v}"));
    }
    parts.join(",")
}
