//! Declarative validators on schema attributes.
//!
//! ```
//! use waddle_framework::prelude::*;
//! use waddle_framework::validators::Validator;
//!
//! let a = Attribute::number().optional().validate(Validator::int_range(1, 512));
//! let dns = Attribute::list_of(Type::String).optional().validate(Validator::Ip);
//! # let _ = (a, dns);
//! ```
//!
//! Rules:
//! * A validator runs only on a **known, non-null** value; unknown values (not yet known at
//!   plan time) and nulls are skipped. Required-ness is the framework's own check.
//! * On an attribute whose type is a list, set or map of primitives, validators check each
//!   element and report the element's path (`dns_servers[1]`, `labels["a"]`).
//! * Every failure is an error at the attribute's (or element's) own path, so
//!   OpenTofu/Terraform points at the configuration line.
//! * [`Schema::validate_values`] runs them over a whole configuration (nested attributes and
//!   blocks included); a [`crate::TypedResource`] does so in its default `validate`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::diag::Diagnostics;
use crate::path::{AttributePath, PathStep};
use crate::schema::{Attribute, AttributeType, Block, BlockNesting, NestingMode, Schema};
use crate::types::Type;
use crate::value::Value;

/// What a custom validator returns on failure: the diagnostic's detail.
pub type CustomCheck = dyn Fn(&Value) -> Result<(), String> + Send + Sync;

/// One declarative check of an attribute value.
#[derive(Clone)]
pub enum Validator {
    /// The string is one of these.
    OneOf(Vec<String>),
    /// A whole number in `min..=max` (summary "Value out of range").
    IntRange(i64, i64),
    /// An IPv4 or IPv6 address.
    Ip,
    /// An address with prefix length (`10.0.0.5/24`, `fd00::1/64`), see [`Cidr`].
    Cidr,
    /// A DNS hostname (RFC 1123 labels: letters, digits, hyphens; at most 253 characters).
    Hostname,
    /// A Go-style duration (`30s`, `1h30m`, `250ms`), the syntax of `timeouts` blocks.
    Duration,
    /// The string matches this regular expression (anchor it yourself), explained by `what`.
    Regex { re: regex::Regex, what: String },
    /// Anything else: `Err(detail)` is reported with `summary`.
    Custom {
        summary: String,
        check: Arc<CustomCheck>,
    },
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::OneOf(v) => write!(f, "OneOf({v:?})"),
            Validator::IntRange(a, b) => write!(f, "IntRange({a}, {b})"),
            Validator::Ip => write!(f, "Ip"),
            Validator::Cidr => write!(f, "Cidr"),
            Validator::Hostname => write!(f, "Hostname"),
            Validator::Duration => write!(f, "Duration"),
            Validator::Regex { re, .. } => write!(f, "Regex({})", re.as_str()),
            Validator::Custom { summary, .. } => write!(f, "Custom({summary:?})"),
        }
    }
}

impl PartialEq for Validator {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Validator::OneOf(a), Validator::OneOf(b)) => a == b,
            (Validator::IntRange(a, b), Validator::IntRange(c, d)) => a == c && b == d,
            (Validator::Ip, Validator::Ip)
            | (Validator::Cidr, Validator::Cidr)
            | (Validator::Hostname, Validator::Hostname)
            | (Validator::Duration, Validator::Duration) => true,
            (Validator::Regex { re: a, .. }, Validator::Regex { re: b, .. }) => {
                a.as_str() == b.as_str()
            }
            (Validator::Custom { check: a, .. }, Validator::Custom { check: b, .. }) => {
                Arc::ptr_eq(a, b)
            }
            _ => false,
        }
    }
}

/// Why a value failed a validator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub summary: String,
    pub detail: String,
}

impl Violation {
    fn invalid(detail: impl Into<String>) -> Self {
        Violation {
            summary: "Invalid value".into(),
            detail: detail.into(),
        }
    }
}

impl Validator {
    pub fn one_of<I, S>(values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Validator::OneOf(values.into_iter().map(Into::into).collect())
    }
    pub fn int_range(min: i64, max: i64) -> Self {
        Validator::IntRange(min, max)
    }
    /// A regular expression; panics on an invalid pattern (patterns are program constants).
    pub fn regex(pattern: &str, what: impl Into<String>) -> Self {
        Validator::Regex {
            re: regex::Regex::new(pattern).expect("validator regex is a constant"),
            what: what.into(),
        }
    }
    pub fn custom<E: std::fmt::Display>(
        summary: impl Into<String>,
        check: impl Fn(&Value) -> Result<(), E> + Send + Sync + 'static,
    ) -> Self {
        Validator::Custom {
            summary: summary.into(),
            check: Arc::new(move |v| check(v).map_err(|e| e.to_string())),
        }
    }

    /// Check one known, non-null value.
    pub fn check(&self, v: &Value) -> Result<(), Violation> {
        let text = || v.as_str().unwrap_or_default();
        match self {
            Validator::OneOf(allowed) => {
                if allowed.iter().any(|a| a == text()) {
                    Ok(())
                } else {
                    Err(Violation::invalid(format!(
                        "{:?} must be one of {}",
                        text(),
                        allowed
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
            Validator::IntRange(min, max) => {
                let Some(n) = v.as_number() else {
                    return Err(Violation::invalid("must be a number"));
                };
                match n.to_i64().filter(|x| (*min..=*max).contains(x)) {
                    Some(_) => Ok(()),
                    None => Err(Violation {
                        summary: "Value out of range".into(),
                        detail: format!(
                            "{} must be a whole number between {min} and {max}",
                            n.to_plain_string()
                        ),
                    }),
                }
            }
            Validator::Ip => match text().parse::<IpAddr>() {
                Ok(_) => Ok(()),
                Err(_) => Err(Violation::invalid(format!(
                    "{:?} is not an IP address",
                    text()
                ))),
            },
            Validator::Cidr => Cidr::parse(text()).map(|_| ()).map_err(|e| {
                Violation::invalid(format!(
                    "{:?} is not an address in CIDR notation: {e}",
                    text()
                ))
            }),
            Validator::Hostname => {
                if is_hostname(text()) {
                    Ok(())
                } else {
                    Err(Violation::invalid(format!(
                        "`{}` is not a valid hostname",
                        text()
                    )))
                }
            }
            Validator::Duration => parse_go_duration(text())
                .map(|_| ())
                .map_err(|e| Violation::invalid(format!("{:?}: {e}", text()))),
            Validator::Regex { re, what } => {
                if re.is_match(text()) {
                    Ok(())
                } else {
                    Err(Violation::invalid(format!("{:?} {what}", text())))
                }
            }
            Validator::Custom { summary, check } => check(v).map_err(|detail| Violation {
                summary: summary.clone(),
                detail,
            }),
        }
    }
}

impl Attribute {
    /// Add a declarative validator (see [`crate::validators`]).
    pub fn validate(mut self, v: Validator) -> Self {
        self.validators.push(v);
        self
    }
}

impl Schema {
    /// Run every attribute's validators over `config` (known, non-null values only),
    /// reporting errors at their own paths. Nested attributes and blocks are walked.
    pub fn validate_values(&self, config: &Value, diags: &mut Diagnostics) {
        validate_block(&self.block, config, &AttributePath::root(), diags);
    }
}

fn run(validators: &[Validator], v: &Value, path: &AttributePath, diags: &mut Diagnostics) {
    for val in validators {
        if let Err(x) = val.check(v) {
            diags.error_at(path.clone(), x.summary, x.detail);
        }
    }
}

fn usable(v: &Value) -> bool {
    v.is_known() && !v.is_null()
}

fn validate_attrs<'a>(
    attrs: impl Iterator<Item = (&'a String, &'a Attribute)>,
    obj: &Value,
    path: &AttributePath,
    diags: &mut Diagnostics,
) {
    for (name, a) in attrs {
        let Some(v) = obj.get_attr(name).filter(|v| usable(v)) else {
            continue;
        };
        let p = path.with(PathStep::Attr(name.clone()));
        match &a.ty {
            AttributeType::Type(Type::List(_) | Type::Set(_)) => {
                for (i, e) in v.as_elements().unwrap_or_default().iter().enumerate() {
                    if usable(e) {
                        run(&a.validators, e, &p.with(PathStep::Index(i as i64)), diags);
                    }
                }
            }
            AttributeType::Type(Type::Map(_)) => {
                for (k, e) in v.as_entries().into_iter().flatten() {
                    if usable(e) {
                        run(&a.validators, e, &p.with(PathStep::Key(k.clone())), diags);
                    }
                }
            }
            AttributeType::Type(_) => run(&a.validators, v, &p, diags),
            AttributeType::Nested(n) => {
                run(&a.validators, v, &p, diags);
                each_nested(n.nesting, v, &p, |e, ep| {
                    validate_attrs(n.attributes.iter(), e, &ep, diags)
                });
            }
        }
    }
}

fn validate_block(b: &Block, obj: &Value, path: &AttributePath, diags: &mut Diagnostics) {
    validate_attrs(b.attributes.iter(), obj, path, diags);
    for (name, nb) in &b.blocks {
        let Some(v) = obj.get_attr(name).filter(|v| usable(v)) else {
            continue;
        };
        let mode = match nb.nesting {
            BlockNesting::Single | BlockNesting::Group => NestingMode::Single,
            BlockNesting::List => NestingMode::List,
            BlockNesting::Set => NestingMode::Set,
            BlockNesting::Map => NestingMode::Map,
        };
        let p = path.with(PathStep::Attr(name.clone()));
        each_nested(mode, v, &p, |e, ep| {
            validate_block(&nb.block, e, &ep, diags)
        });
    }
}

fn each_nested(
    mode: NestingMode,
    v: &Value,
    p: &AttributePath,
    mut f: impl FnMut(&Value, AttributePath),
) {
    match mode {
        NestingMode::Single => f(v, p.clone()),
        NestingMode::List | NestingMode::Set => {
            for (i, e) in v.as_elements().unwrap_or_default().iter().enumerate() {
                if usable(e) {
                    f(e, p.with(PathStep::Index(i as i64)));
                }
            }
        }
        NestingMode::Map => {
            for (k, e) in v.as_entries().into_iter().flatten() {
                if usable(e) {
                    f(e, p.with(PathStep::Key(k.clone())));
                }
            }
        }
    }
}

/// The one CIDR type of the provider (`waddle-net`): strict parsing (decimal prefix, no sign,
/// at most 32 / 128), host bits kept (see [`Cidr`]'s host bits policy).
pub use waddle_net::{Cidr, CidrError};

/// RFC 1123 hostname: dot-separated labels of letters, digits and inner hyphens, each at most
/// 63 characters, at most 253 in all.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A Go `time.ParseDuration` string without sign (`300ms`, `1.5h`, `2h45m`).
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration, String> {
    if s.is_empty() {
        return Err("a duration must not be empty".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid number {num:?} in duration {s:?}"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in duration {s:?} (use ns, us, ms, s, m, h)"
                ))
            }
        };
        total += n * secs;
        rest = next;
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::NestedBlock;

    fn errors(schema: &Schema, v: &Value) -> Vec<(String, String)> {
        let mut d = Diagnostics::new();
        schema.validate_values(v, &mut d);
        crate::testing::errors(&d)
    }

    fn schema() -> Schema {
        Schema::new("t")
            .attribute(
                "mode",
                Attribute::string()
                    .optional()
                    .validate(Validator::one_of(["a", "b"])),
            )
            .attribute(
                "cores",
                Attribute::number()
                    .optional()
                    .validate(Validator::int_range(1, 8)),
            )
            .attribute(
                "dns",
                Attribute::list_of(Type::String)
                    .optional()
                    .validate(Validator::Ip),
            )
            .attribute(
                "nic",
                Attribute::nested(
                    NestingMode::Single,
                    [(
                        "cidr",
                        Attribute::string().required().validate(Validator::Cidr),
                    )],
                )
                .optional(),
            )
            .attribute(
                "host",
                Attribute::string().optional().validate(Validator::Hostname),
            )
            .attribute(
                "wait",
                Attribute::string().optional().validate(Validator::Duration),
            )
            .attribute(
                "tag",
                Attribute::string()
                    .optional()
                    .validate(Validator::regex("^[a-z]+$", "must be lowercase letters")),
            )
            .attribute(
                "even",
                Attribute::number().optional().validate(Validator::custom(
                    "Odd number",
                    |v| match v.as_i64().map(|n| n % 2) {
                        Some(0) => Ok(()),
                        _ => Err("must be even"),
                    },
                )),
            )
            .block(
                "route",
                NestedBlock::list(
                    Block::new().attribute(
                        "port",
                        Attribute::number()
                            .required()
                            .validate(Validator::int_range(1, 65535)),
                    ),
                ),
            )
    }

    #[test]
    fn every_validator_reports_its_own_path() {
        let s = schema();
        let mut v = s.null_value();
        for (p, x) in [
            (AttributePath::attr("mode"), Value::from("c")),
            (AttributePath::attr("cores"), Value::from(9i64)),
            (
                AttributePath::attr("dns"),
                Value::List(vec![Value::from("1.1.1.1"), Value::from("x")]),
            ),
            (
                AttributePath::attr("nic"),
                Value::object([("cidr", Value::from("10.0.0.1"))]),
            ),
            (AttributePath::attr("host"), Value::from("bad_host")),
            (AttributePath::attr("wait"), Value::from("10 minutes")),
            (AttributePath::attr("tag"), Value::from("ABC")),
            (AttributePath::attr("even"), Value::from(3i64)),
            (
                AttributePath::attr("route"),
                Value::List(vec![
                    Value::object([("port", Value::from(80i64))]),
                    Value::object([("port", Value::from(0i64))]),
                ]),
            ),
        ] {
            v.set_path(&p, x);
        }
        let errs = errors(&s, &v);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cores",
                "dns[1]",
                "even",
                "host",
                "mode",
                "nic.cidr",
                "tag",
                "wait",
                "route[1].port"
            ],
            "{errs:?}"
        );
        assert!(errs[0].1.contains("between 1 and 8"), "{errs:?}");
        assert!(errs[1].1.contains("\"x\" is not an IP address"), "{errs:?}");
        assert_eq!(errs[2].1, "must be even");
    }

    #[test]
    fn unknown_and_null_values_are_skipped() {
        let s = schema();
        let mut v = s.null_value();
        v.set_path(&AttributePath::attr("mode"), Value::unknown());
        v.set_path(
            &AttributePath::attr("dns"),
            Value::List(vec![Value::unknown(), Value::from("::1")]),
        );
        v.set_path(
            &AttributePath::attr("nic"),
            Value::object([("cidr", Value::unknown())]),
        );
        assert_eq!(errors(&s, &v), vec![]);
    }

    #[test]
    fn cidrs_durations_and_hostnames() {
        let c = Cidr::parse("10.10.0.5/24").unwrap();
        assert_eq!(c.network().to_string(), "10.10.0.0");
        assert!(c.contains("10.10.0.200".parse().unwrap()));
        assert!(!c.contains("10.10.1.1".parse().unwrap()));
        assert_eq!(c.to_string(), "10.10.0.5/24");
        assert_eq!(Cidr::parse("fd00::1/64").unwrap().prefix, 64);
        for bad in ["10.0.0.1", "10.0.0.1/33", "10.0.0.1/+8", "x/8", "10.0.0.1/"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            std::time::Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            std::time::Duration::from_millis(250)
        );
        for bad in ["", "10", "5x", "m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
        assert!(is_hostname("a-b.example.org"));
        assert!(!is_hostname("-a.org") && !is_hostname("a..b") && !is_hostname(""));
    }
}
