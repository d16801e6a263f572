//! Plan-time checks (no API call); unknown values are skipped.

use std::net::{IpAddr, Ipv4Addr};

use waddle_framework::prelude::*;
use waddle_framework::validators::CidrError;

use super::super::timeouts;
use super::model::parse_rfc3339;

/// Why a firewall value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FwValueError {
    #[error(
        "{0:?}: a rule key is 1-40 lower-case letters, digits, '-' or '_', starting with a \
         letter or digit"
    )]
    Key(String),
    #[error("{name:?} must be 2-{max} characters: a letter, then letters, digits, '-' or '_'")]
    Name { name: String, max: usize },
    #[error("{0:?} is not an IPv4 address or network")]
    NotV4(String),
    #[error("{0:?}: the prefix length must be 0 to 32")]
    Prefix(String),
    #[error("IP set {0}")]
    IpSet(Box<FwValueError>),
    #[error("alias {0}")]
    Alias(Box<FwValueError>),
    #[error("{0:?} is not an address range a-b")]
    NotRange(String),
    #[error("{0:?}: the range ends before it starts")]
    Backwards(String),
    #[error("{0:?} is not a port (0-65535) or service name")]
    Port(String),
    #[error("{0:?} is not an RFC 3339 date-time such as 2026-02-01T18:00:00Z")]
    Time(String),
}

/// A rule key: 1-40 characters, lower-case letters, digits, `-`, `_`, a letter or digit first.
pub fn validate_key(k: &str) -> Result<(), FwValueError> {
    let ok = !k.is_empty()
        && k.len() <= 40
        && k.as_bytes()[0].is_ascii_alphanumeric()
        && k.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(FwValueError::Key(k.into()))
    }
}

/// A firewall object name (IP set, security group): a letter, then letters, digits, `-`, `_`.
pub fn validate_fw_name(n: &str, max: usize) -> Result<(), FwValueError> {
    let ok = n.len() >= 2
        && n.len() <= max
        && n.as_bytes()[0].is_ascii_alphabetic()
        && n.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(FwValueError::Name {
            name: n.into(),
            max,
        })
    }
}

/// An IPv4 address or network (`a.b.c.d[/len]`).
pub fn parse_net(s: &str) -> Result<(Ipv4Addr, u8), FwValueError> {
    let not_v4 = || FwValueError::NotV4(s.into());
    if !s.contains('/') {
        return s
            .parse::<Ipv4Addr>()
            .map(|ip| (ip, 32))
            .map_err(|_| not_v4());
    }
    match Cidr::parse(s) {
        Ok(Cidr {
            addr: IpAddr::V4(ip),
            prefix,
        }) => Ok((ip, prefix)),
        Err(CidrError::Prefix(..)) => Err(FwValueError::Prefix(s.into())),
        _ => Err(not_v4()),
    }
}

/// `source`/`dest`: `+ipset`, an alias name, or a comma list of IPv4 addresses, networks and
/// ranges.
pub fn validate_addr_spec(s: &str) -> Result<(), FwValueError> {
    if let Some(set) = s.strip_prefix('+') {
        let set = set.strip_prefix("dc/").unwrap_or(set);
        return validate_fw_name(set, 64).map_err(|e| FwValueError::IpSet(Box::new(e)));
    }
    if s.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return validate_fw_name(s.strip_prefix("dc/").unwrap_or(s), 64)
            .map_err(|e| FwValueError::Alias(Box::new(e)));
    }
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let not_range = |_| FwValueError::NotRange(part.into());
                let a: Ipv4Addr = a.parse().map_err(not_range)?;
                let b: Ipv4Addr = b.parse().map_err(not_range)?;
                if a > b {
                    return Err(FwValueError::Backwards(part.into()));
                }
            }
            None => {
                parse_net(part)?;
            }
        }
    }
    Ok(())
}

/// `dport`/`sport`: comma list of ports, `a:b` ranges or service names.
pub fn validate_ports(s: &str) -> Result<(), FwValueError> {
    for part in s.split(',') {
        for p in part.split(':') {
            let named = !p.is_empty() && p.bytes().all(|c| c.is_ascii_lowercase() || c == b'-');
            if p.parse::<u16>().is_err() && !named {
                return Err(FwValueError::Port(p.into()));
            }
        }
    }
    Ok(())
}

fn str_at<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get_attr(name)
        .filter(|x| x.is_set())
        .and_then(Value::as_str)
}

const LOG_LEVELS: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog",
];

/// All plan-time checks.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    timeouts::validate(config, diags);
    let p = AttributePath::attr;
    for (name, allowed) in [
        ("policy_in", &["ACCEPT", "REJECT", "DROP"][..]),
        ("policy_out", &["ACCEPT", "REJECT", "DROP"][..]),
    ] {
        if let Some(v) = str_at(config, name) {
            if !allowed.contains(&v) {
                diags.error_at(
                    p(name),
                    "Invalid policy",
                    format!("{v:?} must be one of {}", allowed.join(", ")),
                );
            }
        }
    }
    if let Some(a) = str_at(config, "client_address") {
        if a.parse::<Ipv4Addr>().is_err() {
            diags.error_at(
                p("client_address"),
                "Invalid client address",
                format!("{a:?} is not an IPv4 address"),
            );
        }
    }
    if let Some(set) = config.get_attr("ipset").filter(|v| v.is_set()) {
        if let Some(n) = str_at(set, "name") {
            if let Err(e) = validate_fw_name(n, 64) {
                diags.error_at(
                    p("ipset").then_attr("name"),
                    "Invalid IP set name",
                    e.to_string(),
                );
            }
        }
        if let Some(list) = set.get_attr("cidrs").and_then(Value::as_elements) {
            let mut seen = Vec::new();
            for (i, c) in list.iter().enumerate() {
                let Some(c) = c.as_str() else { continue };
                let path = p("ipset").then_attr("cidrs").then_index(i as i64);
                match parse_net(c) {
                    Err(e) => diags.error_at(path, "Invalid IP set entry", e.to_string()),
                    Ok((_, 0)) => diags.error_at(
                        path,
                        "Invalid IP set entry",
                        format!("{c:?}: Proxmox does not allow a zero prefix in an IP set"),
                    ),
                    Ok(_) if seen.contains(&c) => diags.error_at(
                        path,
                        "Invalid IP set entry",
                        format!("{c:?} is listed twice"),
                    ),
                    Ok(_) => {}
                }
                seen.push(c);
            }
        }
    }
    let Some(rules) = config.get_attr("rules").and_then(Value::as_entries) else {
        return;
    };
    for (key, r) in rules {
        let rp = p("rules").then_key(key.clone());
        let err = |diags: &mut Diagnostics, attr: &str, summary: &str, detail: String| {
            super::super::error_named(diags, rp.clone().then_attr(attr), summary, detail);
        };
        if let Err(e) = validate_key(key) {
            super::super::error_named(diags, rp.clone(), "Invalid rule key", e);
        }
        let kind = str_at(r, "type");
        if let Some(t) = kind {
            if !matches!(t, "in" | "out" | "group") {
                err(
                    diags,
                    "type",
                    "Invalid rule type",
                    format!("{t:?} must be in, out or group"),
                );
            }
        }
        if let Some(a) = str_at(r, "action") {
            if kind == Some("group") {
                if let Err(e) = validate_fw_name(a, 18) {
                    err(diags, "action", "Invalid security group", e.to_string());
                }
            } else if kind.is_some() && !matches!(a, "ACCEPT" | "DROP" | "REJECT") {
                err(
                    diags,
                    "action",
                    "Invalid rule action",
                    format!("{a:?} must be ACCEPT, DROP or REJECT"),
                );
            }
        }
        for name in ["source", "dest"] {
            if let Some(v) = str_at(r, name) {
                if let Err(e) = validate_addr_spec(v) {
                    err(diags, name, "Invalid address", e.to_string());
                }
            }
        }
        let proto = str_at(r, "proto");
        for name in ["dport", "sport"] {
            if let Some(v) = str_at(r, name) {
                if let Err(e) = validate_ports(v) {
                    err(diags, name, "Invalid port", e.to_string());
                } else if proto.is_none() && r.get_attr("proto").is_some_and(Value::is_null) {
                    err(
                        diags,
                        name,
                        "Missing protocol",
                        format!("`{name}` needs `proto` (e.g. \"tcp\"), as Proxmox requires"),
                    );
                }
            }
        }
        if let Some(l) = str_at(r, "log") {
            if !LOG_LEVELS.contains(&l) {
                err(
                    diags,
                    "log",
                    "Invalid log level",
                    format!("{l:?} must be one of {}", LOG_LEVELS.join(", ")),
                );
            }
        }
        if let Some(d) = str_at(r, "description") {
            if d.contains(['\n', '\r']) || d.trim() != d {
                err(
                    diags,
                    "description",
                    "Invalid description",
                    "must be one line without leading or trailing spaces (Proxmox trims comments)"
                        .into(),
                );
            }
        }
        if let Some(e) = str_at(r, "expires") {
            if let Err(m) = parse_rfc3339(e) {
                err(diags, "expires", "Invalid expiry", m.to_string());
            }
        }
    }
}
