//! Attribute paths (as in tfplugin6 `AttributePath`).

use std::fmt;

/// One step of an attribute path.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathStep {
    /// An object attribute (or block) name.
    Attr(String),
    /// A list/tuple index (or a set element position).
    Index(i64),
    /// A map key.
    Key(String),
}

/// A path from the root of a schema value to a nested value.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributePath {
    pub steps: Vec<PathStep>,
}

impl AttributePath {
    /// The empty path (the whole value).
    pub fn root() -> Self {
        Self::default()
    }
    /// A path starting with an attribute name.
    pub fn attr(name: impl Into<String>) -> Self {
        Self::root().then_attr(name)
    }
    pub fn then_attr(mut self, name: impl Into<String>) -> Self {
        self.steps.push(PathStep::Attr(name.into()));
        self
    }
    pub fn then_index(mut self, i: i64) -> Self {
        self.steps.push(PathStep::Index(i));
        self
    }
    pub fn then_key(mut self, k: impl Into<String>) -> Self {
        self.steps.push(PathStep::Key(k.into()));
        self
    }
    /// A copy with one more step.
    pub fn with(&self, step: PathStep) -> Self {
        let mut p = self.clone();
        p.steps.push(step);
        p
    }
    pub fn is_root(&self) -> bool {
        self.steps.is_empty()
    }
    pub fn steps(&self) -> &[PathStep] {
        &self.steps
    }
}

impl fmt::Display for AttributePath {
    /// HCL-like rendering: `routes[0].host`, `labels["a"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.steps.iter().enumerate() {
            match s {
                PathStep::Attr(a) if i == 0 => write!(f, "{a}")?,
                PathStep::Attr(a) => write!(f, ".{a}")?,
                PathStep::Index(n) => write!(f, "[{n}]")?,
                PathStep::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn display() {
        let p = AttributePath::attr("routes")
            .then_index(2)
            .then_attr("labels")
            .then_key("a.b");
        assert_eq!(p.to_string(), r#"routes[2].labels["a.b"]"#);
        assert!(AttributePath::root().is_root());
    }
}
