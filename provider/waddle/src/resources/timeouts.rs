//! The `timeouts` attribute every resource has: optional `create`, `update` and `delete`
//! deadlines as Terraform-style durations (`90s`, `30m`, `1h30m`), validated at plan with
//! their attribute path.
//!
//! Terraform < 1.0.9 panics on a null single-nested attribute that is only optional, so the
//! attribute is declared optional + computed and planned exactly as configured
//! ([`plan_as_configured`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;
use waddle_framework::NestingMode;

/// The attribute's name.
pub const ATTR: &str = "timeouts";

/// `timeouts`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeoutsModel {
    pub create: Option<String>,
    pub update: Option<String>,
    pub delete: Option<String>,
}

/// The operation a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Create, Op::Update, Op::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// A resource's default deadlines.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    pub create: Duration,
    pub update: Duration,
    pub delete: Duration,
}

impl Defaults {
    fn of(&self, op: Op) -> Duration {
        match op {
            Op::Create => self.create,
            Op::Update => self.update,
            Op::Delete => self.delete,
        }
    }
}

impl TimeoutsModel {
    /// The deadline of `op`: the configured one, else the default (a configured value that
    /// does not parse was refused at plan; it falls back to the default too).
    pub fn get(this: Option<&TimeoutsModel>, op: Op, defaults: &Defaults) -> Duration {
        let v = this.and_then(|t| match op {
            Op::Create => t.create.as_deref(),
            Op::Update => t.update.as_deref(),
            Op::Delete => t.delete.as_deref(),
        });
        v.and_then(|s| parse_duration(s).ok())
            .unwrap_or_else(|| defaults.of(op))
    }
}

/// The deadline of one operation, started when the operation starts.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub op: Op,
    pub limit: Duration,
    started: Instant,
}

impl Deadline {
    pub fn start(op: Op, limit: Duration) -> Self {
        Deadline {
            op,
            limit,
            started: Instant::now(),
        }
    }

    /// What is left of it (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.started.elapsed())
    }

    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Proxmox task waits bounded by what is left of the deadline.
    pub fn wait_options(&self) -> waddle_proxmox::WaitOptions {
        waddle_proxmox::WaitOptions {
            timeout: Some(self.remaining()),
            ..Default::default()
        }
    }
}

impl std::fmt::Display for Deadline {
    /// `timeouts.create (5s)`: names the knob that bounds the operation.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{ATTR}.{} ({})",
            self.op.name(),
            format_duration(self.limit)
        )
    }
}

/// Formats a default for the docs: `30m`, `90s`, `1h`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs.is_multiple_of(3600) && secs > 0 {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) && secs > 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The schema of `timeouts`; `what` describes each operation's deadline.
pub fn attribute(defaults: &Defaults, what: [&str; 3]) -> Attribute {
    let fields = Op::ALL.map(|op| {
        let desc = format!(
            "{} Defaults to `\"{}\"`.",
            what[op as usize],
            format_duration(defaults.of(op))
        );
        (op.name(), Attribute::string().description(&desc).optional())
    });
    Attribute::nested(NestingMode::Single, fields)
        .optional()
        .computed()
        .description("Deadlines such as `30m` or `1h30m`.")
}

/// Refuses a configured deadline that is not a duration, at its attribute path.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    for op in Op::ALL {
        let p = AttributePath::attr(ATTR).then_attr(op.name());
        if let Some(t) = config.get_path(&p).and_then(Value::as_str) {
            if let Err(e) = parse_duration(t) {
                super::error_named(diags, p, "Invalid timeout", e);
            }
        }
    }
}

/// Plans `timeouts` exactly as configured (see the module docs).
pub fn plan_as_configured(config: &Value, plan: &mut Value) {
    if let Some(v) = config.get_attr(ATTR) {
        plan.set_path(&AttributePath::attr(ATTR), v.clone());
    }
}

/// Why a `timeouts` value is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("{0:?} is not a duration such as 30m or 1h30m")]
    NotANumber(String),
    #[error("{0:?}: unknown unit {1:?} (use ms, s, m or h)")]
    Unit(String, String),
    #[error("{0:?} is too long a duration")]
    TooLong(String),
    #[error("{0:?}: a number needs a unit (ms, s, m or h)")]
    NoUnit(String),
}

/// Parses a Terraform-style duration: `90s`, `30m`, `1h30m`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total = Duration::ZERO;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if c == 'm' && chars.peek() == Some(&'s') {
            unit.push('s');
            chars.next();
        }
        let n: f64 = num
            .parse()
            .map_err(|_| DurationError::NotANumber(s.into()))?;
        num.clear();
        let secs = match unit.as_str() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(DurationError::Unit(s.into(), unit)),
        };
        total = Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| DurationError::TooLong(s.into()))?;
    }
    if !num.is_empty() {
        return Err(DurationError::NoUnit(s.into()));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_or_are_refused() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("5 minutes").is_err());
        // Too large for a Duration: refused, not a panic.
        assert!(parse_duration("99999999999999999999999h").is_err());
    }

    #[test]
    fn configured_deadlines_win_over_defaults() {
        let d = Defaults {
            create: Duration::from_secs(60),
            update: Duration::from_secs(120),
            delete: Duration::from_secs(3600),
        };
        let t = TimeoutsModel {
            create: Some("5s".into()),
            ..Default::default()
        };
        assert_eq!(
            TimeoutsModel::get(Some(&t), Op::Create, &d),
            Duration::from_secs(5)
        );
        assert_eq!(TimeoutsModel::get(Some(&t), Op::Update, &d), d.update);
        assert_eq!(TimeoutsModel::get(None, Op::Delete, &d), d.delete);
        assert_eq!(format_duration(d.delete), "1h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        let dl = Deadline::start(Op::Create, Duration::from_secs(5));
        assert_eq!(dl.to_string(), "timeouts.create (5s)");
        assert!(Deadline::start(Op::Delete, Duration::ZERO).passed());
    }
}
