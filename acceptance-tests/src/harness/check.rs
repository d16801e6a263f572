//! Ready-made state, output and plan checks for [`TestStep`](super::TestStep)s.
//!
//! Every check returns `Err(message)` describing what was expected and what was found.

use regex::Regex;
use serde_json::Value;

use super::state::{Outputs, Plan, Resource, State};

/// What a state check sees after a step's apply (or import).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `terraform show -json`
    pub state: State,
    /// `terraform output -json`
    pub outputs: Outputs,
    /// The directory the CLI ran in.
    pub work_dir: std::path::PathBuf,
    /// The case's log directory: stdout, stderr and the `TF_LOG` file of every command so far.
    pub logs_dir: std::path::PathBuf,
}

impl Snapshot {
    /// The resource at `address` or an error naming the addresses that do exist.
    pub fn resource(&self, address: &str) -> Result<Resource, String> {
        self.state.resource(address).ok_or_else(|| {
            format!(
                "resource {address} not in state (state has: {:?})",
                self.state.addresses()
            )
        })
    }

    /// The output `name` or an error naming the outputs that do exist.
    pub fn output(&self, name: &str) -> Result<&Value, String> {
        self.outputs.get(name).ok_or_else(|| {
            format!(
                "output {name:?} not found (outputs: {:?})",
                self.outputs.names()
            )
        })
    }
}

/// A check on the state/outputs after apply.
pub type Check = Box<dyn Fn(&Snapshot) -> Result<(), String> + Send + Sync>;
/// A check on the JSON of the plan a step is about to apply.
pub type PlanCheck = Box<dyn Fn(&Plan) -> Result<(), String> + Send + Sync>;

/// Wraps a closure as a [`Check`].
pub fn func(f: impl Fn(&Snapshot) -> Result<(), String> + Send + Sync + 'static) -> Check {
    Box::new(f)
}

/// The resource instance exists in state.
pub fn resource_exists(address: &str) -> Check {
    let address = address.to_owned();
    Box::new(move |s| s.resource(&address).map(|_| ()))
}

/// The resource instance does not exist in state.
pub fn resource_absent(address: &str) -> Check {
    let address = address.to_owned();
    Box::new(move |s| match s.state.resource(&address) {
        Some(_) => Err(format!("resource {address} is still in state")),
        None => Ok(()),
    })
}

fn attr_of(s: &Snapshot, address: &str, path: &str) -> Result<Value, String> {
    let r = s.resource(address)?;
    r.attr(path).cloned().ok_or_else(|| {
        format!(
            "{address}: attribute {path:?} not found (attributes: {})",
            r.values
        )
    })
}

/// The attribute equals `expected` (JSON equality; use `json!(..)` or a `&str`).
pub fn attr_equals(address: &str, path: &str, expected: impl Into<Value>) -> Check {
    let (address, path, expected) = (address.to_owned(), path.to_owned(), expected.into());
    Box::new(move |s| {
        let got = attr_of(s, &address, &path)?;
        if got == expected {
            Ok(())
        } else {
            Err(format!("{address}.{path}: expected {expected}, got {got}"))
        }
    })
}

/// The attribute is a string containing a match for `pattern`.
pub fn attr_matches(address: &str, path: &str, pattern: &str) -> Check {
    let (address, path) = (address.to_owned(), path.to_owned());
    let re = compile(pattern);
    Box::new(move |s| {
        let got = attr_of(s, &address, &path)?;
        let re = re.as_ref().map_err(Clone::clone)?;
        match got.as_str() {
            Some(v) if re.is_match(v) => Ok(()),
            _ => Err(format!("{address}.{path}: {got} does not match /{re}/")),
        }
    })
}

/// The attribute is present and not null.
pub fn attr_set(address: &str, path: &str) -> Check {
    let (address, path) = (address.to_owned(), path.to_owned());
    Box::new(move |s| match attr_of(s, &address, &path)? {
        Value::Null => Err(format!("{address}.{path}: expected a value, got null")),
        _ => Ok(()),
    })
}

/// The attribute is null or absent.
pub fn attr_null(address: &str, path: &str) -> Check {
    let (address, path) = (address.to_owned(), path.to_owned());
    Box::new(move |s| {
        let r = s.resource(&address)?;
        match r.attr(&path) {
            None | Some(Value::Null) => Ok(()),
            Some(v) => Err(format!("{address}.{path}: expected null, got {v}")),
        }
    })
}

/// The list/map/string attribute has `len` elements (characters for strings).
pub fn attr_len(address: &str, path: &str, len: usize) -> Check {
    let (address, path) = (address.to_owned(), path.to_owned());
    Box::new(move |s| {
        let got = attr_of(s, &address, &path)?;
        let n = match &got {
            Value::Array(a) => a.len(),
            Value::Object(m) => m.len(),
            Value::String(v) => v.chars().count(),
            other => return Err(format!("{address}.{path}: {other} has no length")),
        };
        if n == len {
            Ok(())
        } else {
            Err(format!(
                "{address}.{path}: expected length {len}, got {n} ({got})"
            ))
        }
    })
}

/// Two attributes (possibly of different resources) are equal.
pub fn attr_pair(address_a: &str, path_a: &str, address_b: &str, path_b: &str) -> Check {
    let (aa, pa, ab, pb) = (
        address_a.to_owned(),
        path_a.to_owned(),
        address_b.to_owned(),
        path_b.to_owned(),
    );
    Box::new(move |s| {
        let (a, b) = (attr_of(s, &aa, &pa)?, attr_of(s, &ab, &pb)?);
        if a == b {
            Ok(())
        } else {
            Err(format!("{aa}.{pa} = {a} but {ab}.{pb} = {b}"))
        }
    })
}

/// The output equals `expected`.
pub fn output_equals(name: &str, expected: impl Into<Value>) -> Check {
    let (name, expected) = (name.to_owned(), expected.into());
    Box::new(move |s| {
        let got = s.output(&name)?;
        if *got == expected {
            Ok(())
        } else {
            Err(format!("output {name}: expected {expected}, got {got}"))
        }
    })
}

/// The string output contains a match for `pattern`.
pub fn output_matches(name: &str, pattern: &str) -> Check {
    let name = name.to_owned();
    let re = compile(pattern);
    Box::new(move |s| {
        let got = s.output(&name)?;
        let re = re.as_ref().map_err(Clone::clone)?;
        match got.as_str() {
            Some(v) if re.is_match(v) => Ok(()),
            _ => Err(format!("output {name}: {got} does not match /{re}/")),
        }
    })
}

/// The output equals an attribute of a resource.
pub fn output_equals_attr(name: &str, address: &str, path: &str) -> Check {
    let (name, address, path) = (name.to_owned(), address.to_owned(), path.to_owned());
    Box::new(move |s| {
        let out = s.output(&name)?;
        let attr = attr_of(s, &address, &path)?;
        if *out == attr {
            Ok(())
        } else {
            Err(format!(
                "output {name} = {out} but {address}.{path} = {attr}"
            ))
        }
    })
}

/// The plan's actions for `address` are exactly `expected` (e.g. `&["update"]`).
pub fn plan_actions(address: &str, expected: &[&str]) -> PlanCheck {
    let address = address.to_owned();
    let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    Box::new(move |p| match p.actions(&address) {
        Some(a) if a == expected => Ok(()),
        Some(a) => Err(format!(
            "{address}: planned actions {a:?}, expected {expected:?}"
        )),
        None => Err(format!("{address}: not in the plan's resource_changes")),
    })
}

/// The plan does not replace (delete+create) `address`.
pub fn plan_no_replace(address: &str) -> PlanCheck {
    let address = address.to_owned();
    Box::new(move |p| match p.actions(&address) {
        Some(a) if a.iter().any(|x| x == "delete") => {
            Err(format!("{address}: planned {a:?}, expected no replacement"))
        }
        _ => Ok(()),
    })
}

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| format!("bad check regex /{pattern}/: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap() -> Snapshot {
        Snapshot {
            state: State::from_json(json!({"values": {"root_module": {"resources": [
                {"address": "waddle_x.a", "mode": "managed", "type": "waddle_x", "name": "a",
                 "values": {"id": "abc123", "tags": ["x", "y"], "gone": null}}
            ]}}})),
            outputs: Outputs::from_json(json!({"id": {"sensitive": false, "value": "abc123"}})),
            work_dir: "/nonexistent".into(),
            logs_dir: "/nonexistent".into(),
        }
    }

    #[test]
    fn checks_pass_and_fail_meaningfully() {
        let s = snap();
        let ok: Vec<Check> = vec![
            resource_exists("waddle_x.a"),
            resource_absent("waddle_x.b"),
            attr_equals("waddle_x.a", "id", "abc123"),
            attr_equals("waddle_x.a", "tags", json!(["x", "y"])),
            attr_matches("waddle_x.a", "id", "^abc[0-9]+$"),
            attr_set("waddle_x.a", "tags.0"),
            attr_null("waddle_x.a", "gone"),
            attr_null("waddle_x.a", "missing"),
            attr_len("waddle_x.a", "tags", 2),
            output_equals("id", "abc123"),
            output_matches("id", "123$"),
            output_equals_attr("id", "waddle_x.a", "id"),
            attr_pair("waddle_x.a", "id", "waddle_x.a", "id"),
        ];
        for (i, c) in ok.iter().enumerate() {
            assert_eq!(c(&s), Ok(()), "check #{i}");
        }
        let bad: Vec<(Check, &str)> = vec![
            (resource_exists("waddle_x.b"), "not in state"),
            (resource_absent("waddle_x.a"), "still in state"),
            (attr_equals("waddle_x.a", "id", "zzz"), "expected \"zzz\""),
            (attr_equals("waddle_x.a", "nope", "zzz"), "not found"),
            (attr_matches("waddle_x.a", "id", "^z"), "does not match"),
            (attr_matches("waddle_x.a", "id", "("), "bad check regex"),
            (attr_set("waddle_x.a", "gone"), "got null"),
            (attr_null("waddle_x.a", "id"), "expected null"),
            (attr_len("waddle_x.a", "tags", 3), "expected length 3"),
            (output_equals("id", "x"), "expected \"x\""),
            (output_equals("nope", "x"), "not found"),
            (output_matches("id", "^x"), "does not match"),
            (attr_pair("waddle_x.a", "id", "waddle_x.a", "tags.0"), "but"),
        ];
        for (c, msg) in bad {
            let err = c(&s).unwrap_err();
            assert!(err.contains(msg), "{err:?} should contain {msg:?}");
        }
    }

    #[test]
    fn plan_checks() {
        let p = Plan::from_json(json!({"resource_changes": [
            {"address": "a.b", "change": {"actions": ["update"]}},
            {"address": "a.c", "change": {"actions": ["delete", "create"]}}
        ]}));
        assert_eq!(plan_actions("a.b", &["update"])(&p), Ok(()));
        assert!(plan_actions("a.b", &["create"])(&p).is_err());
        assert!(plan_actions("a.x", &["create"])(&p).is_err());
        assert_eq!(plan_no_replace("a.b")(&p), Ok(()));
        assert!(plan_no_replace("a.c")(&p)
            .unwrap_err()
            .contains("no replacement"));
    }
}
