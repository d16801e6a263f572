//! Resource identity described once per resource: the attributes that name the remote object,
//! in the order its import ID joins them (`<zone>/<vnet>`, `<node>/<vmid>`, ...).
//!
//! One [`ImportIdentity`] gives the identity schema the CLI asks for, the identity of a state
//! (the same-named state attributes, or a function where a part is not a top-level
//! attribute), and the import ID an `import { identity = {...} }` stands for, so import by
//! identity and import by ID run the same code.

use crate::provider::{IdentityAttribute, IdentitySchema};
use crate::types::Type;
use crate::value::Value;

/// One part of an identity.
#[derive(Clone, Debug)]
pub struct IdentityPart {
    pub name: &'static str,
    /// `Type::String` or `Type::Number` (whole numbers).
    pub ty: Type,
    /// Required to import; an optional part may be left out (its separator too).
    pub required: bool,
    pub description: &'static str,
    /// The part's value in a state; default: the top-level attribute of the same name.
    pub from_state: Option<fn(&Value) -> Value>,
}

impl IdentityPart {
    /// A required string part read from the same-named state attribute.
    pub fn string(name: &'static str, description: &'static str) -> Self {
        IdentityPart {
            name,
            ty: Type::String,
            required: true,
            description,
            from_state: None,
        }
    }
    /// A required whole-number part read from the same-named state attribute.
    pub fn number(name: &'static str, description: &'static str) -> Self {
        IdentityPart {
            ty: Type::Number,
            ..IdentityPart::string(name, description)
        }
    }
    /// Optional for import.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }
    /// Read from the state with `f` instead of the same-named attribute.
    pub fn from_state(mut self, f: fn(&Value) -> Value) -> Self {
        self.from_state = Some(f);
        self
    }
}

/// A resource's identity and how it maps to the import ID.
#[derive(Clone, Debug)]
pub struct ImportIdentity {
    pub version: i64,
    pub parts: Vec<IdentityPart>,
    /// What joins the parts in the import ID.
    pub separator: &'static str,
}

impl ImportIdentity {
    /// Version 0 with these parts joined by `separator`.
    pub fn new(separator: &'static str, parts: Vec<IdentityPart>) -> Self {
        ImportIdentity {
            version: 0,
            parts,
            separator,
        }
    }

    /// The schema the CLI gets from `GetResourceIdentitySchemas`.
    pub fn schema(&self) -> IdentitySchema {
        IdentitySchema {
            version: self.version,
            attributes: self
                .parts
                .iter()
                .map(|p| IdentityAttribute {
                    name: p.name.to_string(),
                    ty: p.ty.clone(),
                    required_for_import: p.required,
                    optional_for_import: !p.required,
                    description: p.description.to_string(),
                })
                .collect(),
        }
    }

    /// The identity of a state: every part as the state holds it (null when absent). The
    /// framework reports it only once every value is known.
    pub fn of_state(&self, state: &Value) -> Value {
        Value::object(self.parts.iter().map(|p| {
            let v = match p.from_state {
                Some(f) => f(state),
                None => state.get_attr(p.name).cloned().unwrap_or(Value::Null),
            };
            (p.name, v)
        }))
    }

    /// The import ID an identity stands for: its parts joined by the separator, a missing
    /// optional part left out together with its separator (`<node>/<vmid>` or `<vmid>`).
    pub fn import_id(&self, identity: &Value) -> Result<String, String> {
        let mut out: Vec<String> = Vec::new();
        let last = self.parts.len().saturating_sub(1);
        for (i, p) in self.parts.iter().enumerate() {
            let v = identity.get_attr(p.name).cloned().unwrap_or(Value::Null);
            if v.is_null() {
                if p.required {
                    return Err(format!("the identity has no `{}`", p.name));
                }
                continue;
            }
            let text = match (&p.ty, v.as_str(), v.as_number()) {
                (Type::String, Some(s), _) if !s.is_empty() => s.to_string(),
                (Type::Number, _, Some(n)) => match n.to_i64() {
                    Some(i) => i.to_string(),
                    None => return Err(format!("`{}` must be a whole number, not {n}", p.name)),
                },
                _ => return Err(format!("`{}` is empty or of the wrong type", p.name)),
            };
            // The import ID is split at the first separators: only the last part may hold one.
            if i != last && !self.separator.is_empty() && text.contains(self.separator) {
                return Err(format!(
                    "`{}` ({text:?}) must not contain {:?}",
                    p.name, self.separator
                ));
            }
            out.push(text);
        }
        Ok(out.join(self.separator))
    }

    /// The import ID of a request: the ID the CLI gave, else the one its identity stands for.
    pub fn resolve(&self, id: &str, identity: Option<&Value>) -> Result<String, String> {
        match identity {
            Some(i) if id.is_empty() => self.import_id(i),
            _ => Ok(id.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> ImportIdentity {
        ImportIdentity::new(
            "/",
            vec![
                IdentityPart::string("node", "node").optional(),
                IdentityPart::number("vmid", "vmid"),
            ],
        )
    }

    fn network() -> ImportIdentity {
        ImportIdentity::new(
            "/",
            vec![
                IdentityPart::string("zone", "zone"),
                IdentityPart::string("vnet", "vnet"),
                IdentityPart::string("extra", "extra").optional(),
            ],
        )
    }

    #[test]
    fn schema_marks_required_and_optional_parts() {
        let s = network().schema();
        assert_eq!(s.version, 0);
        let flags: Vec<(String, bool, bool)> = s
            .attributes
            .iter()
            .map(|a| (a.name.clone(), a.required_for_import, a.optional_for_import))
            .collect();
        assert_eq!(
            flags,
            vec![
                ("zone".into(), true, false),
                ("vnet".into(), true, false),
                ("extra".into(), false, true)
            ]
        );
    }

    #[test]
    fn identity_of_a_state_and_back_to_the_import_id() {
        let st = Value::object([
            ("zone", Value::from("waddle")),
            ("vnet", Value::from("vmbr1")),
            ("cidr", Value::from("10.10.0.0/24")),
        ]);
        let id = network().of_state(&st);
        assert_eq!(id.get_attr("zone").and_then(Value::as_str), Some("waddle"));
        assert!(id.get_attr("extra").is_some_and(Value::is_null));
        assert_eq!(network().import_id(&id).unwrap(), "waddle/vmbr1");
        assert_eq!(network().resolve("", Some(&id)).unwrap(), "waddle/vmbr1");
        assert_eq!(network().resolve("a/b", Some(&id)).unwrap(), "a/b");
    }

    #[test]
    fn numbers_are_whole_and_parts_are_checked() {
        let id = Value::object([("node", Value::from("pve")), ("vmid", Value::from(120i64))]);
        assert_eq!(vm().import_id(&id).unwrap(), "pve/120");
        let no_node = Value::object([("node", Value::Null), ("vmid", Value::from(7i64))]);
        assert_eq!(vm().import_id(&no_node).unwrap(), "7");
        let no_vmid = Value::object([("node", Value::from("pve")), ("vmid", Value::Null)]);
        assert!(vm().import_id(&no_vmid).unwrap_err().contains("`vmid`"));
        let slash = Value::object([("zone", Value::from("a/b")), ("vnet", Value::from("v"))]);
        assert!(network()
            .import_id(&slash)
            .unwrap_err()
            .contains("must not contain"));
        let last = Value::object([("node", Value::from("pve")), ("vmid", Value::from(1i64))]);
        assert_eq!(vm().import_id(&last).unwrap(), "pve/1");
        let empty = Value::object([("zone", Value::from("")), ("vnet", Value::from("v"))]);
        assert!(network().import_id(&empty).unwrap_err().contains("`zone`"));
        let gap = Value::object([
            ("zone", Value::from("z")),
            ("vnet", Value::Null),
            ("extra", Value::from("x")),
        ]);
        assert!(network().import_id(&gap).is_err());
    }
}
