//! A view of a configuration (or plan) value that tolerates unknown values.
//!
//! At plan time any attribute may be unknown (it depends on another resource). Reading such a
//! value with `as_str()` silently gives `None`, the same as null; [`ConfigView`] keeps the
//! three cases apart so a check can skip what is not known yet and apply defaults only to
//! what is really unset.
//!
//! ```
//! use waddle_framework::config::{ConfigView, Field};
//! use waddle_framework::Value;
//!
//! let v = Value::object([("name", Value::unknown()), ("cores", Value::from(2i64))]);
//! let c = ConfigView::new(&v);
//! assert!(c.str("name").is_unknown());
//! assert_eq!(c.i64("cores").known(), Some(2));
//! assert_eq!(c.str("missing").or("default"), Some("default"));
//! ```

use crate::value::Value;

/// One attribute of a configuration: unknown, null (unset) or known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field<T> {
    Unknown,
    Null,
    Known(T),
}

impl<T> Field<T> {
    /// The value when known.
    pub fn known(self) -> Option<T> {
        match self {
            Field::Known(t) => Some(t),
            _ => None,
        }
    }
    pub fn is_unknown(&self) -> bool {
        matches!(self, Field::Unknown)
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }
    /// The value, or `default` when unset; `None` while unknown.
    pub fn or(self, default: T) -> Option<T> {
        match self {
            Field::Unknown => None,
            Field::Null => Some(default),
            Field::Known(t) => Some(t),
        }
    }
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Unknown => Field::Unknown,
            Field::Null => Field::Null,
            Field::Known(t) => Field::Known(f(t)),
        }
    }
    /// The value when known; an unknown one clears `complete` (for a caller that reads
    /// several fields and must know whether all it needed was known).
    pub fn tracked(self, complete: &mut bool) -> Option<T> {
        *complete &= !self.is_unknown();
        self.known()
    }
    /// Like [`Field::map`] for a conversion that may fail (a failure reads as null).
    pub fn and_then<U>(self, f: impl FnOnce(T) -> Option<U>) -> Field<U> {
        match self {
            Field::Unknown => Field::Unknown,
            Field::Null => Field::Null,
            Field::Known(t) => f(t).map_or(Field::Null, Field::Known),
        }
    }
}

/// An unknown-tolerant view of an object value (a configuration, a plan, a nested object).
#[derive(Clone, Copy, Debug)]
pub struct ConfigView<'a> {
    value: &'a Value,
}

impl<'a> ConfigView<'a> {
    pub fn new(value: &'a Value) -> Self {
        ConfigView { value }
    }
    /// The viewed value.
    pub fn value(&self) -> &'a Value {
        self.value
    }
    /// Whether the viewed value itself is wholly known.
    pub fn is_wholly_known(&self) -> bool {
        self.value.is_wholly_known()
    }
    /// The attribute `name` (a missing attribute reads as null).
    pub fn field(&self, name: &str) -> Field<&'a Value> {
        if self.value.is_unknown() {
            return Field::Unknown;
        }
        match self.value.get_attr(name) {
            Some(v) if v.is_unknown() => Field::Unknown,
            Some(v) if v.is_null() => Field::Null,
            Some(v) => Field::Known(v),
            None => Field::Null,
        }
    }
    /// Whether `name` is unknown.
    pub fn is_unknown(&self, name: &str) -> bool {
        self.field(name).is_unknown()
    }
    pub fn str(&self, name: &str) -> Field<&'a str> {
        self.field(name).and_then(Value::as_str)
    }
    pub fn i64(&self, name: &str) -> Field<i64> {
        self.field(name).and_then(Value::as_i64)
    }
    pub fn bool(&self, name: &str) -> Field<bool> {
        self.field(name).and_then(Value::as_bool)
    }
    /// A nested object.
    pub fn object(&self, name: &str) -> Field<ConfigView<'a>> {
        self.field(name).map(ConfigView::new)
    }
    /// The elements of a list or set (each may still hold unknowns).
    pub fn elements(&self, name: &str) -> Field<&'a [Value]> {
        self.field(name).and_then(Value::as_elements)
    }
    /// A list or set of strings; unknown when any element is.
    pub fn strings(&self, name: &str) -> Field<Vec<&'a str>> {
        match self.elements(name) {
            Field::Known(xs) if xs.iter().all(Value::is_known) => {
                Field::Known(xs.iter().filter_map(Value::as_str).collect())
            }
            Field::Known(_) | Field::Unknown => Field::Unknown,
            Field::Null => Field::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_reads_clear_completeness_only_on_unknowns() {
        let mut complete = true;
        assert_eq!(Field::Known(1).tracked(&mut complete), Some(1));
        assert_eq!(Field::<i32>::Null.tracked(&mut complete), None);
        assert!(complete);
        assert_eq!(Field::<i32>::Unknown.tracked(&mut complete), None);
        assert!(!complete);
        assert_eq!(Field::Known(2).tracked(&mut complete), Some(2));
        assert!(!complete);
    }

    #[test]
    fn unknown_null_and_known_are_kept_apart() {
        let v = Value::object([
            ("a", Value::unknown()),
            ("b", Value::Null),
            ("c", Value::from("x")),
            ("l", Value::List(vec![Value::from("p"), Value::unknown()])),
            ("n", Value::object([("k", Value::from(true))])),
        ]);
        let c = ConfigView::new(&v);
        assert!(c.str("a").is_unknown());
        assert!(c.str("b").is_null());
        assert_eq!(c.str("c"), Field::Known("x"));
        assert_eq!(c.str("a").or("d"), None);
        assert_eq!(c.str("b").or("d"), Some("d"));
        assert!(c.strings("l").is_unknown());
        assert_eq!(
            c.object("n").known().map(|n| n.bool("k")),
            Some(Field::Known(true))
        );
        let unknown = Value::unknown();
        assert!(ConfigView::new(&unknown).str("c").is_unknown());
    }
}
