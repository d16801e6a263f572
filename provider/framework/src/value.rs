//! The cty value model: known values, null and unknown (optionally refined).

use std::collections::BTreeMap;

use crate::number::Number;
use crate::path::{AttributePath, PathStep};
use crate::types::{ObjectType, Type};

/// Refinements an unknown value may carry (cty msgpack extension 12). They are decoded
/// leniently and re-encoded byte-for-byte (`raw`); the framework never relies on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refinements {
    /// The value is known not to be null.
    pub not_null: bool,
    /// A known prefix of an unknown string.
    pub string_prefix: Option<String>,
    /// The raw msgpack payload of the refinement extension, when decoded from the wire.
    pub raw: Option<Vec<u8>>,
}

impl Refinements {
    pub fn is_empty(&self) -> bool {
        !self.not_null && self.string_prefix.is_none() && self.raw.is_none()
    }
}

/// A cty value. The type is not stored: encoding and decoding are always driven by a
/// [`Type`] (usually implied by a schema). At dynamically-typed positions the decoder keeps
/// the concrete type in [`Value::Dynamic`].
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    Unknown(Refinements),
    Bool(bool),
    Number(Number),
    String(String),
    List(Vec<Value>),
    /// Set elements in wire order (compare with [`Value::equals`] for set semantics).
    Set(Vec<Value>),
    Tuple(Vec<Value>),
    Map(BTreeMap<String, Value>),
    Object(BTreeMap<String, Value>),
    /// A value at a `dynamic` position together with its concrete type.
    Dynamic(Type, Box<Value>),
}

impl Value {
    /// A plain (unrefined) unknown value.
    pub fn unknown() -> Value {
        Value::Unknown(Refinements::default())
    }
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
    pub fn number(n: impl Into<Number>) -> Value {
        Value::Number(n.into())
    }
    /// An object value from `(name, value)` pairs.
    pub fn object<I, S>(attrs: I) -> Value
    where
        I: IntoIterator<Item = (S, Value)>,
        S: Into<String>,
    {
        Value::Object(attrs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Look through a [`Value::Dynamic`] wrapper.
    pub fn inner(&self) -> &Value {
        match self {
            Value::Dynamic(_, v) => v.inner(),
            v => v,
        }
    }
    fn inner_mut(&mut self) -> &mut Value {
        match self {
            Value::Dynamic(_, v) => v.inner_mut(),
            v => v,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.inner(), Value::Null)
    }
    /// True when this value itself is unknown (not looking inside).
    pub fn is_unknown(&self) -> bool {
        matches!(self.inner(), Value::Unknown(_))
    }
    /// True when this value is not unknown (it may still contain unknowns).
    pub fn is_known(&self) -> bool {
        !self.is_unknown()
    }
    /// True when neither this value nor anything inside it is unknown.
    pub fn is_wholly_known(&self) -> bool {
        match self.inner() {
            Value::Unknown(_) => false,
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => {
                v.iter().all(Value::is_wholly_known)
            }
            Value::Map(m) | Value::Object(m) => m.values().all(Value::is_wholly_known),
            _ => true,
        }
    }
    /// Known and not null.
    pub fn is_set(&self) -> bool {
        !self.is_null() && !self.is_unknown()
    }

    pub fn as_str(&self) -> Option<&str> {
        match self.inner() {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self.inner() {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_number(&self) -> Option<&Number> {
        match self.inner() {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(Number::to_i64)
    }
    /// Elements of a list, set or tuple.
    pub fn as_elements(&self) -> Option<&[Value]> {
        match self.inner() {
            Value::List(v) | Value::Set(v) | Value::Tuple(v) => Some(v),
            _ => None,
        }
    }
    /// Entries of a map or object.
    pub fn as_entries(&self) -> Option<&BTreeMap<String, Value>> {
        match self.inner() {
            Value::Map(m) | Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Attribute of an object (None if this is not an object or lacks it).
    pub fn get_attr(&self, name: &str) -> Option<&Value> {
        match self.inner() {
            Value::Object(m) => m.get(name),
            _ => None,
        }
    }
    pub fn get_attr_mut(&mut self, name: &str) -> Option<&mut Value> {
        match self.inner_mut() {
            Value::Object(m) => m.get_mut(name),
            _ => None,
        }
    }

    /// Follow one path step.
    pub fn get_step(&self, step: &PathStep) -> Option<&Value> {
        match (step, self.inner()) {
            (PathStep::Attr(a), Value::Object(m)) => m.get(a),
            (PathStep::Key(k), Value::Map(m)) => m.get(k),
            (PathStep::Index(i), Value::List(v) | Value::Set(v) | Value::Tuple(v)) => {
                usize::try_from(*i).ok().and_then(|i| v.get(i))
            }
            _ => None,
        }
    }
    fn get_step_mut(&mut self, step: &PathStep) -> Option<&mut Value> {
        match (step, self.inner_mut()) {
            (PathStep::Attr(a), Value::Object(m)) => m.get_mut(a),
            (PathStep::Key(k), Value::Map(m)) => m.get_mut(k),
            (PathStep::Index(i), Value::List(v) | Value::Set(v) | Value::Tuple(v)) => {
                usize::try_from(*i).ok().and_then(|i| v.get_mut(i))
            }
            _ => None,
        }
    }

    /// The value at `path`, or None when the path does not exist (including when it passes
    /// through a null or unknown value).
    pub fn get_path(&self, path: &AttributePath) -> Option<&Value> {
        path.steps.iter().try_fold(self, |v, s| v.get_step(s))
    }
    pub fn get_path_mut(&mut self, path: &AttributePath) -> Option<&mut Value> {
        let mut cur = self;
        for s in &path.steps {
            cur = cur.get_step_mut(s)?;
        }
        Some(cur)
    }
    /// Replace the value at an existing path; returns false when the path does not exist.
    pub fn set_path(&mut self, path: &AttributePath, v: Value) -> bool {
        match self.get_path_mut(path) {
            Some(slot) => {
                *slot = v;
                true
            }
            None => false,
        }
    }

    /// Semantic equality: sets compare without order, `Dynamic` wrappers are transparent,
    /// unknowns are equal to unknowns regardless of refinements.
    pub fn equals(&self, other: &Value) -> bool {
        match (self.inner(), other.inner()) {
            (Value::Unknown(_), Value::Unknown(_)) => true,
            (Value::Set(a), Value::Set(b)) => {
                a.len() == b.len()
                    && a.iter().all(|x| b.iter().any(|y| x.equals(y)))
                    && b.iter().all(|y| a.iter().any(|x| x.equals(y)))
            }
            (Value::List(a), Value::List(b)) | (Value::Tuple(a), Value::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (Value::Map(a), Value::Map(b)) | (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len() && a.iter().all(|(k, x)| b.get(k).is_some_and(|y| x.equals(y)))
            }
            (a, b) => a == b,
        }
    }

    /// Replace every unknown (at any depth) with null.
    pub fn unknown_as_null(&self) -> Value {
        self.map_leaves(&|v| {
            if v.is_unknown() {
                Some(Value::Null)
            } else {
                None
            }
        })
    }

    /// Rebuild this value, replacing any sub-value for which `f` returns Some.
    pub fn map_leaves(&self, f: &dyn Fn(&Value) -> Option<Value>) -> Value {
        if let Some(v) = f(self) {
            return v;
        }
        match self {
            Value::List(v) => Value::List(v.iter().map(|x| x.map_leaves(f)).collect()),
            Value::Set(v) => Value::Set(v.iter().map(|x| x.map_leaves(f)).collect()),
            Value::Tuple(v) => Value::Tuple(v.iter().map(|x| x.map_leaves(f)).collect()),
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, x)| (k.clone(), x.map_leaves(f)))
                    .collect(),
            ),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), x.map_leaves(f)))
                    .collect(),
            ),
            Value::Dynamic(t, v) => Value::Dynamic(t.clone(), Box::new(v.map_leaves(f))),
            v => v.clone(),
        }
    }

    /// Best-effort type of a value at a dynamic position (null/unknown give `dynamic`).
    pub fn infer_type(&self) -> Type {
        fn elem(vs: &[Value]) -> Type {
            vs.iter()
                .map(Value::infer_type)
                .find(|t| *t != Type::Dynamic)
                .unwrap_or(Type::Dynamic)
        }
        match self {
            Value::Null | Value::Unknown(_) => Type::Dynamic,
            Value::Bool(_) => Type::Bool,
            Value::Number(_) => Type::Number,
            Value::String(_) => Type::String,
            Value::List(v) => Type::list(elem(v)),
            Value::Set(v) => Type::set(elem(v)),
            Value::Tuple(v) => Type::Tuple(v.iter().map(Value::infer_type).collect()),
            Value::Map(m) => Type::map(elem(&m.values().cloned().collect::<Vec<_>>())),
            Value::Object(m) => Type::Object(ObjectType {
                attrs: m.iter().map(|(k, v)| (k.clone(), v.infer_type())).collect(),
                optional: Default::default(),
            }),
            Value::Dynamic(t, _) => t.clone(),
        }
    }

    /// Null out every value in `self` located at one of `paths` (paths that do not exist
    /// are ignored). Used to strip write-only attributes from state.
    pub fn null_paths(&mut self, paths: &[AttributePath]) {
        for p in paths {
            if let Some(slot) = self.get_path_mut(p) {
                *slot = Value::Null;
            }
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<Number> for Value {
    fn from(n: Number) -> Self {
        Value::Number(n)
    }
}
impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Number(n.into())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(o: Option<T>) -> Self {
        o.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        Value::object([
            ("name", Value::string("a")),
            (
                "routes",
                Value::List(vec![Value::object([
                    ("host", Value::unknown()),
                    (
                        "labels",
                        Value::Map([("k".to_string(), Value::from("v"))].into()),
                    ),
                ])]),
            ),
        ])
    }

    #[test]
    fn path_access() {
        let mut v = sample();
        let host = AttributePath::attr("routes")
            .then_index(0)
            .then_attr("host");
        assert!(v.get_path(&host).unwrap().is_unknown());
        assert!(!v.is_wholly_known());
        assert_eq!(
            v.get_path(
                &AttributePath::attr("routes")
                    .then_index(0)
                    .then_attr("labels")
                    .then_key("k")
            )
            .and_then(Value::as_str),
            Some("v")
        );
        assert!(v
            .get_path(&AttributePath::attr("routes").then_index(3))
            .is_none());
        assert!(v.set_path(&host, Value::from("h")));
        assert!(v.is_wholly_known());
        assert!(!v.set_path(&AttributePath::attr("nope"), Value::Null));
        v.null_paths(&[AttributePath::attr("name")]);
        assert!(v.get_attr("name").unwrap().is_null());
    }

    #[test]
    fn set_equality_ignores_order() {
        let a = Value::Set(vec![Value::from("x"), Value::from("y")]);
        let b = Value::Set(vec![Value::from("y"), Value::from("x")]);
        assert!(a.equals(&b));
        assert_ne!(a, b);
        assert!(!a.equals(&Value::Set(vec![Value::from("x")])));
        assert!(Value::Dynamic(Type::String, Box::new("x".into())).equals(&"x".into()));
    }

    #[test]
    fn unknown_as_null_and_infer() {
        let v = sample().unknown_as_null();
        assert!(v.is_wholly_known());
        assert_eq!(
            Value::List(vec![Value::Null, Value::from(1)]).infer_type(),
            Type::list(Type::Number)
        );
    }
}
