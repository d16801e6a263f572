//! Validation findings with attribute paths (`nodes["cp1"].address`).

use std::fmt;

/// One step of an attribute path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// An attribute name (`nodes`, `address`).
    Attr(String),
    /// A map key (`["cp1"]`).
    Key(String),
    /// A list index (`[0]`).
    Index(usize),
}

/// An attribute path in the resource configuration, rendered Terraform-style:
/// `nodes["cp1"].config_patches[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AttrPath(pub Vec<PathStep>);

impl AttrPath {
    /// Root path starting at attribute `name`.
    pub fn root(name: &str) -> Self {
        AttrPath(vec![PathStep::Attr(name.to_string())])
    }

    /// `nodes["<name>"]`.
    pub fn node(name: &str) -> Self {
        Self::root("nodes").key(name)
    }

    /// Appends an attribute step.
    pub fn attr(mut self, name: &str) -> Self {
        self.0.push(PathStep::Attr(name.to_string()));
        self
    }

    /// Appends a map key step.
    pub fn key(mut self, key: &str) -> Self {
        self.0.push(PathStep::Key(key.to_string()));
        self
    }

    /// Appends a list index step.
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(PathStep::Index(i));
        self
    }

    /// The steps of this path.
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
                PathStep::Key(k) => write!(f, "[{k:?}]")?,
                PathStep::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Plan can go on; shown to the operator.
    Warning,
    /// Refused: nothing is applied.
    Error,
}

/// One validation finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Where in the configuration.
    pub path: AttrPath,
    /// Error or warning.
    pub severity: Severity,
    /// Short summary suitable as a diagnostic summary.
    pub message: String,
}

impl Issue {
    /// An error at `path`.
    pub fn error(path: AttrPath, message: impl Into<String>) -> Self {
        Issue {
            path,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    /// A warning at `path`.
    pub fn warning(path: AttrPath, message: impl Into<String>) -> Self {
        Issue {
            path,
            severity: Severity::Warning,
            message: message.into(),
        }
    }

    /// Whether this finding refuses the plan.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}: {}", self.path, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_terraform_style() {
        let p = AttrPath::node("cp1").attr("config_patches").index(2);
        assert_eq!(p.to_string(), r#"nodes["cp1"].config_patches[2]"#);
        assert_eq!(AttrPath::root("vip").to_string(), "vip");
    }
}
