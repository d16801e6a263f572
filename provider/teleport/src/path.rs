//! Attribute paths of validation errors (`apps[1].uri`, `github.teams_to_roles`).

use std::fmt;

/// One step of an [`AttrPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// An attribute (object field).
    Attr(String),
    /// A list element.
    Index(usize),
    /// A map element.
    Key(String),
}

/// Where in the resource configuration a value is, e.g. `apps[1].uri`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AttrPath(pub Vec<PathStep>);

impl AttrPath {
    /// A top-level attribute.
    pub fn attr(name: &str) -> Self {
        AttrPath(vec![PathStep::Attr(name.into())])
    }
    /// This path and then attribute `name`.
    pub fn field(&self, name: &str) -> Self {
        self.then(PathStep::Attr(name.into()))
    }
    /// This path and then list element `i`.
    pub fn index(&self, i: usize) -> Self {
        self.then(PathStep::Index(i))
    }
    /// This path and then map element `k`.
    pub fn key(&self, k: &str) -> Self {
        self.then(PathStep::Key(k.into()))
    }
    fn then(&self, s: PathStep) -> Self {
        let mut steps = self.0.clone();
        steps.push(s);
        AttrPath(steps)
    }
    /// The steps, outermost first.
    pub fn steps(&self) -> &[PathStep] {
        &self.0
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                PathStep::Attr(a) if i == 0 => write!(f, "{a}")?,
                PathStep::Attr(a) => write!(f, ".{a}")?,
                PathStep::Index(x) => write!(f, "[{x}]")?,
                PathStep::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        Ok(())
    }
}
