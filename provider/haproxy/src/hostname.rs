//! Hostname patterns: parsing, IDNA normalization and matching semantics.
//!
//! # Semantics
//!
//! A route hostname is one of:
//!
//! * an **exact name** (`teleport.example.org`): matches exactly that SNI (case-insensitively);
//! * a **subdomain pattern**, written either `*.apps.example.org` or `.apps.example.org`
//!   (both forms mean the same thing): matches any name that ends with `.apps.example.org`
//!   and has at least one more label — `a.apps.example.org`, `a.b.apps.example.org` — but
//!   never `apps.example.org` itself, `evilapps.example.org`, or
//!   `apps.example.org.attacker.test`.
//!
//! Normalization: Unicode names (U-labels) are converted to punycode A-labels with UTS #46
//! (`bücher.example` -> `xn--bcher-kva.example`), everything is lowercased, and the *key* of a
//! pattern is the exact name itself or, for subdomain patterns, the suffix with its leading
//! dot (`.apps.example.org`). Two hostnames **overlap** when their keys are equal; overlapping
//! hostnames across (or within) routes are refused. An exact name under a wildcard
//! (`x.apps.example.org` beside `*.apps.example.org`) and nested wildcards
//! (`*.example.org` beside `*.apps.example.org`) are allowed: exact names win over
//! wildcards, and the longest wildcard suffix wins among wildcards.
//!
//! Rules: labels 1..=63 octets, whole name (as `*.suffix` for wildcards) at most 253 octets,
//! letters/digits/hyphen only (no `_`), no leading or trailing hyphen in a label, no trailing
//! dot, no IP literals (an all-numeric last label), `*` only as the whole leftmost label, and a
//! wildcard suffix of at least two labels (`*.com` is refused). `*`, `.` and `*.` are refused
//! as catch-alls: they would make the default drop unreachable.
//!
//! HAProxy's `map_end` would also match a (malformed) SNI that *is* `.apps.example.org` with
//! its leading dot; such a name is not a valid hostname, TLS stacks do not send it, and
//! [`HostPattern::matches`] does not match it.

use crate::error::ErrorKind;
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// A normalized hostname pattern of a route.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    /// Exactly this (lowercase, A-label) name.
    Exact(String),
    /// Any proper subdomain of this (lowercase, A-label) suffix, written without a leading dot.
    Subdomains(String),
}

impl HostPattern {
    /// The normalized key: the name for exact patterns, `.suffix` for subdomain patterns.
    /// This is also the key written to the HAProxy map file.
    pub fn key(&self) -> String {
        match self {
            HostPattern::Exact(n) => n.clone(),
            HostPattern::Subdomains(s) => format!(".{s}"),
        }
    }

    /// Whether this pattern matches a server name, with the same semantics as the rendered
    /// HAProxy lookup (`lower` then exact `map` / `map_end` on the dotted suffix).
    pub fn matches(&self, sni: &str) -> bool {
        let sni = sni.to_ascii_lowercase();
        match self {
            HostPattern::Exact(n) => sni == *n,
            HostPattern::Subdomains(s) => {
                sni.len() > s.len() + 1
                    && sni.ends_with(s.as_str())
                    && sni.as_bytes()[sni.len() - s.len() - 1] == b'.'
            }
        }
    }

    /// Number of labels of the name or suffix.
    pub fn label_count(&self) -> usize {
        match self {
            HostPattern::Exact(n) | HostPattern::Subdomains(n) => n.split('.').count(),
        }
    }
}

/// Parses and normalizes one route hostname (see the module docs for the rules).
pub fn parse_hostname(input: &str) -> Result<HostPattern, ErrorKind> {
    if input.is_empty() {
        return Err(ErrorKind::EmptyHostname);
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ErrorKind::Whitespace(input.to_string()));
    }
    let (wildcard, rest) = if input == "*" {
        return Err(ErrorKind::CatchAll(input.to_string()));
    } else if let Some(r) = input.strip_prefix("*.") {
        (true, r)
    } else if let Some(r) = input.strip_prefix('.') {
        (true, r)
    } else {
        (false, input)
    };
    if wildcard && (rest.is_empty() || rest == "." || rest == "*") {
        return Err(ErrorKind::CatchAll(input.to_string()));
    }
    if rest.contains('*') {
        return Err(ErrorKind::MisplacedWildcard(input.to_string()));
    }
    if rest.ends_with('.') {
        return Err(ErrorKind::TrailingDot(input.to_string()));
    }
    if rest.starts_with('.') || rest.contains("..") {
        return Err(ErrorKind::EmptyLabel(input.to_string()));
    }
    // UTS #46 mapping + punycode. No ASCII deny list here: LDH is checked below with a
    // precise error; hyphen positions likewise.
    let ascii = Uts46::new()
        .to_ascii(
            rest.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| ErrorKind::InvalidIdna(input.to_string()))?
        .to_ascii_lowercase();
    if ascii.is_empty() {
        return Err(ErrorKind::InvalidIdna(input.to_string()));
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(ErrorKind::EmptyLabel(input.to_string()));
        }
        if let Some(ch) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(ErrorKind::InvalidCharacter {
                hostname: input.to_string(),
                ch,
            });
        }
        if label.len() > 63 {
            return Err(ErrorKind::LabelTooLong {
                hostname: input.to_string(),
                label: label.to_string(),
                len: label.len(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ErrorKind::HyphenPosition {
                hostname: input.to_string(),
                label: label.to_string(),
            });
        }
    }
    let full_len = if wildcard {
        ascii.len() + 2
    } else {
        ascii.len()
    };
    if full_len > 253 {
        return Err(ErrorKind::NameTooLong {
            hostname: input.to_string(),
            len: full_len,
        });
    }
    let last = ascii.rsplit('.').next().unwrap_or_default();
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Err(ErrorKind::IpLiteral(input.to_string()));
    }
    if wildcard {
        if ascii.split('.').count() < 2 {
            return Err(ErrorKind::WildcardSuffixTooShort(input.to_string()));
        }
        Ok(HostPattern::Subdomains(ascii))
    } else {
        Ok(HostPattern::Exact(ascii))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type KindCheck = fn(&ErrorKind) -> bool;

    fn ok(s: &str) -> HostPattern {
        parse_hostname(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalizes_case_and_forms() {
        assert_eq!(
            ok("Teleport.Example.ORG"),
            HostPattern::Exact("teleport.example.org".into())
        );
        assert_eq!(
            ok("*.apps.example.org"),
            HostPattern::Subdomains("apps.example.org".into())
        );
        assert_eq!(ok(".Apps.example.org"), ok("*.apps.example.org"));
        assert_eq!(ok("*.apps.example.org").key(), ".apps.example.org");
        assert_eq!(ok("a.example.org").key(), "a.example.org");
    }

    #[test]
    fn idna_u_labels_become_a_labels() {
        assert_eq!(
            ok("Bücher.example.org"),
            HostPattern::Exact("xn--bcher-kva.example.org".into())
        );
        assert_eq!(
            ok("*.bücher.example"),
            HostPattern::Subdomains("xn--bcher-kva.example".into())
        );
        // an existing valid A-label is kept
        assert_eq!(
            ok("xn--bcher-kva.example.org"),
            HostPattern::Exact("xn--bcher-kva.example.org".into())
        );
        // an invalid punycode label is refused
        assert!(matches!(
            parse_hostname("xn--a.example.org"),
            Err(ErrorKind::InvalidIdna(_))
        ));
    }

    #[test]
    fn refuses_bad_names() {
        use ErrorKind as K;
        let cases: &[(&str, KindCheck)] = &[
            ("", |e| matches!(e, K::EmptyHostname)),
            ("*", |e| matches!(e, K::CatchAll(_))),
            ("*.", |e| matches!(e, K::CatchAll(_))),
            (".", |e| matches!(e, K::CatchAll(_))),
            ("*.com", |e| matches!(e, K::WildcardSuffixTooShort(_))),
            (".org", |e| matches!(e, K::WildcardSuffixTooShort(_))),
            ("a.*.example.org", |e| matches!(e, K::MisplacedWildcard(_))),
            ("*foo.example.org", |e| matches!(e, K::MisplacedWildcard(_))),
            ("**.example.org", |e| matches!(e, K::MisplacedWildcard(_))),
            ("foo_bar.example.org", |e| {
                matches!(e, K::InvalidCharacter { ch: '_', .. })
            }),
            ("a b.example.org", |e| matches!(e, K::Whitespace(_))),
            ("example.org.", |e| matches!(e, K::TrailingDot(_))),
            ("a..example.org", |e| matches!(e, K::EmptyLabel(_))),
            ("-a.example.org", |e| matches!(e, K::HyphenPosition { .. })),
            ("a-.example.org", |e| matches!(e, K::HyphenPosition { .. })),
            ("10.0.0.1", |e| matches!(e, K::IpLiteral(_))),
            ("a:b.example.org", |e| {
                matches!(e, K::InvalidCharacter { ch: ':', .. })
            }),
        ];
        for (input, check) in cases {
            let err = parse_hostname(input).expect_err(input);
            assert!(check(&err), "{input}: unexpected error {err:?}");
        }
    }

    #[test]
    fn length_limits() {
        let l63 = "a".repeat(63);
        let l64 = "a".repeat(64);
        ok(&format!("{l63}.example.org"));
        assert!(matches!(
            parse_hostname(&format!("{l64}.example.org")),
            Err(ErrorKind::LabelTooLong { len: 64, .. })
        ));
        // 4 labels of 63 + 3 dots = 255 > 253
        let long = [l63.as_str(); 4].join(".");
        assert!(matches!(
            parse_hostname(&long),
            Err(ErrorKind::NameTooLong { len: 255, .. })
        ));
        // exactly 253: 3*63 + 3 dots + 61 = 253
        let l61 = "b".repeat(61);
        let exact253 = format!("{l63}.{l63}.{l63}.{l61}");
        assert_eq!(exact253.len(), 253);
        ok(&exact253);
        // the wildcard form counts the `*.` too
        assert!(matches!(
            parse_hostname(&format!("*.{exact253}")),
            Err(ErrorKind::NameTooLong { len: 255, .. })
        ));
        // a U-label whose A-label form exceeds 63 octets
        let long_u = "ü".repeat(60);
        assert!(matches!(
            parse_hostname(&format!("{long_u}.example.org")),
            Err(ErrorKind::LabelTooLong { .. })
        ));
    }

    #[test]
    fn matching_semantics() {
        let w = ok("*.apps.example.org");
        for yes in [
            "a.apps.example.org",
            "a.b.apps.example.org",
            "A.APPS.example.org",
        ] {
            assert!(w.matches(yes), "{yes}");
        }
        for no in [
            "apps.example.org",
            "evilapps.example.org",
            "apps.example.org.attacker.test",
            ".apps.example.org",
            "example.org",
        ] {
            assert!(!w.matches(no), "{no}");
        }
        let e = ok("teleport.example.org");
        assert!(e.matches("TELEPORT.example.org"));
        assert!(!e.matches("x.teleport.example.org"));
    }
}
