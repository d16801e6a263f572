//! Minimal IP / CIDR helpers used by validation and rendering.

pub use waddle_net::Cidr;

/// Why a CIDR string was refused (this crate's messages for [`waddle_net::CidrError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/prefix` part.
    #[error("{0:?} has no prefix length (expected an address like 10.10.0.10/24)")]
    MissingPrefix(String),
    /// The address part is not an IP address.
    #[error("{0:?} is not a valid IP address")]
    BadAddress(String),
    /// The prefix is not a number or too long for the address family.
    #[error("{0:?} is not a valid prefix length")]
    BadPrefix(String),
}

/// An interface address with its prefix length, e.g. `10.10.0.10/24` (host bits kept), read
/// by the one [`Cidr`] parser and reported in this crate's words.
pub fn parse_cidr(s: &str) -> Result<Cidr, CidrError> {
    Cidr::parse(s).map_err(|e| match e {
        waddle_net::CidrError::NoPrefix => CidrError::MissingPrefix(s.to_string()),
        waddle_net::CidrError::Address(a) => CidrError::BadAddress(a),
        waddle_net::CidrError::Prefix(p, _) => CidrError::BadPrefix(p),
    })
}

/// Normalises a MAC address to lower-case colon form (`bc:24:11:00:00:01`).
/// Accepts `:` or `-` separators. Returns `None` when it is not a MAC address.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = Vec::with_capacity(6);
    for p in parts {
        if p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        out.push(p.to_ascii_lowercase());
    }
    Some(out.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_contains() {
        let c = parse_cidr("10.10.0.10/24").unwrap();
        assert!(c.contains("10.10.0.20".parse().unwrap()));
        assert!(!c.contains("10.10.1.20".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(parse_cidr("10.10.0.10").is_err());
        assert!(parse_cidr("10.10.0.10/33").is_err());
        assert!(parse_cidr("10.10.0.300/24").is_err());
        let v6 = parse_cidr("fd00::10/64").unwrap();
        assert!(v6.contains("fd00::1".parse().unwrap()));
        let all = parse_cidr("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn this_crates_messages() {
        assert_eq!(
            parse_cidr("10.10.0.10").unwrap_err().to_string(),
            "\"10.10.0.10\" has no prefix length (expected an address like 10.10.0.10/24)"
        );
        assert_eq!(
            parse_cidr("10.10.0.300/24").unwrap_err().to_string(),
            "\"10.10.0.300\" is not a valid IP address"
        );
        for bad in ["33", "+8", "-8", ""] {
            assert_eq!(
                parse_cidr(&format!("10.10.0.10/{bad}")),
                Err(CidrError::BadPrefix(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_cidr("10.10.0.10/+8").unwrap_err().to_string(),
            "\"+8\" is not a valid prefix length"
        );
    }

    #[test]
    fn network_and_broadcast() {
        assert!(parse_cidr("10.10.0.0/24")
            .unwrap()
            .is_network_or_broadcast());
        assert!(parse_cidr("10.10.0.255/24")
            .unwrap()
            .is_network_or_broadcast());
        assert!(!parse_cidr("10.10.0.1/24")
            .unwrap()
            .is_network_or_broadcast());
        assert!(!parse_cidr("10.10.0.1/32")
            .unwrap()
            .is_network_or_broadcast());
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("BC-24-11-00-00-0A").as_deref(),
            Some("bc:24:11:00:00:0a")
        );
        assert_eq!(normalize_mac("bc:24:11:00:00"), None);
        assert_eq!(normalize_mac("bc:24:11:00:00:zz"), None);
    }
}

/// Host and port of an `https://host[:port]` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP (without brackets).
    pub host: String,
    /// Port (default 6443).
    pub port: u16,
}

/// Parses a Kubernetes API endpoint `https://host[:port]` (no path).
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let rest = s
        .strip_prefix("https://")
        .ok_or_else(|| format!("{s:?} must start with https://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(format!("{s:?} must be https://host[:port] without a path"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?} has an unterminated IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{s:?} is not a valid endpoint")),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?} has an invalid port"))?,
        None => 6443,
    };
    Ok(Endpoint { host, port })
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn network_and_endpoint() {
        let c = parse_cidr("10.10.0.10/24").unwrap();
        assert_eq!(c.subnet().to_string(), "10.10.0.0/24");
        let e = parse_endpoint("https://10.10.0.20:6443").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.10.0.20", 6443));
        assert_eq!(parse_endpoint("https://k8s.example").unwrap().port, 6443);
        assert_eq!(
            parse_endpoint("https://[fd00::20]:443").unwrap().host,
            "fd00::20"
        );
        assert!(parse_endpoint("http://10.10.0.20:6443").is_err());
        assert!(parse_endpoint("https://10.10.0.20:6443/api").is_err());
        assert!(parse_endpoint("https://10.10.0.20:99999").is_err());
    }
}
