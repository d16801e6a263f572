//! Validation of a [`ProxySpec`] into a normalized, render-ready form.
//!
//! All problems are collected (not only the first), each with its attribute path, so the
//! provider can report every one as a plan-time diagnostic before any API call.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use waddle_net::{Cidr, Reserved};

use crate::error::{AttrPath, ErrorKind, ValidationError, ValidationErrors};
use crate::hostname::{parse_hostname, HostPattern};
use crate::spec::{LogTarget, ProxySpec};

/// A parsed backend address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Backend {
    /// IP address.
    pub ip: IpAddr,
    /// TCP port, 1..=65535.
    pub port: u16,
}

impl fmt::Display for Backend {
    /// `10.10.0.2:3080` or `[fd00::2]:443` (the form HAProxy's `server` line takes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// Parses `<ipv4>:<port>` or `[<ipv6>]:<port>`.
pub fn parse_backend(s: &str) -> Result<Backend, ErrorKind> {
    if s.is_empty() {
        return Err(ErrorKind::EmptyBackend);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(ErrorKind::BackendNotIp(s.to_string()));
        };
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| ErrorKind::BackendNotIp(s.to_string()))?;
        let Some(port) = after.strip_prefix(':') else {
            return Err(ErrorKind::BackendMissingPort(s.to_string()));
        };
        (IpAddr::V6(ip), port)
    } else {
        match s.matches(':').count() {
            0 => return Err(ErrorKind::BackendMissingPort(s.to_string())),
            1 => {}
            _ => return Err(ErrorKind::BackendUnbracketedIpv6(s.to_string())),
        }
        let (host, port) = s.split_once(':').unwrap_or((s, ""));
        let ip: Ipv4Addr = host.parse().map_err(|_| {
            if !host.is_empty() && host.chars().all(|c| c.is_ascii_digit() || c == '.') {
                ErrorKind::BackendInvalidIpv4 {
                    backend: s.to_string(),
                    host: host.to_string(),
                }
            } else {
                ErrorKind::BackendNotIp(s.to_string())
            }
        })?;
        (IpAddr::V4(ip), port)
    };
    if port.is_empty() {
        return Err(ErrorKind::BackendMissingPort(s.to_string()));
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(ErrorKind::BackendInvalidPort {
            backend: s.to_string(),
            port: port.to_string(),
        });
    }
    let value: u64 = port.parse().map_err(|_| ErrorKind::BackendInvalidPort {
        backend: s.to_string(),
        port: port.to_string(),
    })?;
    if value == 0 || value > 65535 {
        return Err(ErrorKind::BackendPortOutOfRange {
            backend: s.to_string(),
            port: value,
        });
    }
    Ok(Backend {
        ip: host,
        port: value as u16,
    })
}

/// Refuses a backend no connection can be sent to (`0.0.0.0`, `[::]`).
fn routable(written: &str, b: Backend) -> Result<Backend, ErrorKind> {
    if b.ip.is_unspecified() {
        Err(ErrorKind::BackendUnspecified(written.to_string()))
    } else {
        Ok(b)
    }
}

/// A validated, normalized route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedRoute {
    /// Index in `routes`.
    pub index: usize,
    /// HAProxy backend name (`be_route_<index>`), also the value in the map files.
    pub backend_name: String,
    /// Normalized hostname patterns, in the order written.
    pub patterns: Vec<HostPattern>,
    /// Backend address.
    pub backend: Backend,
    /// `send-proxy-v2`.
    pub proxy_protocol: bool,
    /// L4 health check.
    pub check: bool,
}

/// A spec that passed validation, with normalized routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedSpec {
    /// Normalized routes, in spec order.
    pub routes: Vec<NormalizedRoute>,
    /// Parsed port-80 backend.
    pub http_backend: Option<Backend>,
}

impl ValidatedSpec {
    /// The route a server name would reach (exact names first, then the longest wildcard
    /// suffix), or `None` for the default drop. Mirrors the rendered HAProxy lookup.
    pub fn route_for(&self, sni: &str) -> Option<&NormalizedRoute> {
        let exact = self.routes.iter().find(|r| {
            r.patterns
                .iter()
                .any(|p| matches!(p, HostPattern::Exact(_)) && p.matches(sni))
        });
        if exact.is_some() {
            return exact;
        }
        self.routes
            .iter()
            .flat_map(|r| r.patterns.iter().map(move |p| (r, p)))
            .filter(|(_, p)| matches!(p, HostPattern::Subdomains(_)) && p.matches(sni))
            .max_by_key(|(_, p)| p.key().len())
            .map(|(r, _)| r)
    }
}

fn check_timeout(d: Duration) -> Result<(), ErrorKind> {
    let ms = d.as_millis();
    if ms == 0 {
        Err(ErrorKind::TimeoutZero)
    } else if ms > i32::MAX as u128 {
        Err(ErrorKind::TimeoutTooLarge(ms))
    } else {
        Ok(())
    }
}

fn check_path(p: &str) -> Result<(), ErrorKind> {
    let ok = p.starts_with('/')
        && p.len() > 1
        && !p
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '#' | '\\'));
    if ok {
        Ok(())
    } else {
        Err(ErrorKind::InvalidPath(p.to_string()))
    }
}

/// Whether `s` is a usable Unix user/group name (`[a-z_][a-z0-9_-]{0,31}`).
pub fn is_valid_unix_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// Validates a spec. On success returns the normalized routes; otherwise every error found.
pub fn validate(spec: &ProxySpec) -> Result<ValidatedSpec, ValidationErrors> {
    let mut errors = Vec::new();
    let mut routes = Vec::new();
    // normalized key -> first path it appeared at
    let mut seen: BTreeMap<String, AttrPath> = BTreeMap::new();
    let routes_path = AttrPath::attr("routes");

    for (i, route) in spec.routes.iter().enumerate() {
        let rpath = routes_path.index(i);
        let hpath = rpath.field("hostnames");
        if route.hostnames.is_empty() {
            errors.push(ValidationError::new(hpath.clone(), ErrorKind::NoHostnames));
        }
        let mut patterns = Vec::new();
        for (j, h) in route.hostnames.iter().enumerate() {
            let path = hpath.index(j);
            match parse_hostname(h) {
                Ok(p) => {
                    let key = p.key();
                    if let Some(first) = seen.get(&key) {
                        errors.push(ValidationError::new(
                            path,
                            ErrorKind::DuplicateHostname {
                                hostname: h.clone(),
                                key,
                                first: first.clone(),
                            },
                        ));
                    } else {
                        seen.insert(key, path);
                        patterns.push(p);
                    }
                }
                Err(kind) => errors.push(ValidationError::new(path, kind)),
            }
        }
        match parse_backend(&route.backend).and_then(|b| routable(&route.backend, b)) {
            Ok(backend) => routes.push(NormalizedRoute {
                index: i,
                backend_name: format!("be_route_{i}"),
                patterns,
                backend,
                proxy_protocol: route.proxy_protocol,
                check: route.check,
            }),
            Err(kind) => errors.push(ValidationError::new(rpath.field("backend"), kind)),
        }
    }

    let http_backend = match &spec.http_backend {
        None => None,
        Some(b) => match parse_backend(b).and_then(|x| routable(b, x)) {
            Ok(b) => Some(b),
            Err(kind) => {
                errors.push(ValidationError::new(AttrPath::attr("http_backend"), kind));
                None
            }
        },
    };

    let listen = AttrPath::attr("listen");
    if spec.listen.https_port == 0 {
        errors.push(ValidationError::new(
            listen.field("https"),
            ErrorKind::ListenPortZero,
        ));
    }
    if spec.http_backend.is_some() {
        if spec.listen.http_port == 0 {
            errors.push(ValidationError::new(
                listen.field("http"),
                ErrorKind::ListenPortZero,
            ));
        } else if spec.listen.http_port == spec.listen.https_port {
            errors.push(ValidationError::new(
                listen.field("http"),
                ErrorKind::ListenPortClash(spec.listen.http_port),
            ));
        }
    }
    if spec.maxconn == 0 {
        errors.push(ValidationError::new(
            AttrPath::attr("maxconn"),
            ErrorKind::MaxconnZero,
        ));
    }
    let t = &spec.timeouts;
    let tpath = AttrPath::attr("proxy_timeouts");
    for (name, d) in [
        ("connect", t.connect),
        ("client", t.client),
        ("server", t.server),
        ("tunnel", t.tunnel),
        ("inspect", t.inspect),
    ] {
        if let Err(kind) = check_timeout(d) {
            errors.push(ValidationError::new(tpath.field(name), kind));
        }
    }
    if let LogTarget::Syslog { address, facility } = &spec.log {
        let lpath = AttrPath::attr("log");
        let addr_ok =
            check_path(address).is_ok() || address.parse::<std::net::SocketAddr>().is_ok();
        if !addr_ok {
            errors.push(ValidationError::new(
                lpath.field("address"),
                ErrorKind::InvalidLog(address.clone()),
            ));
        }
        if !FACILITIES.contains(&facility.as_str()) {
            errors.push(ValidationError::new(
                lpath.field("facility"),
                ErrorKind::InvalidLog(facility.clone()),
            ));
        }
    }
    let ppath = AttrPath::attr("paths");
    for (name, p) in [
        ("config", &spec.paths.config),
        ("exact_map", &spec.paths.exact_map),
        ("wildcard_map", &spec.paths.wildcard_map),
    ] {
        if let Err(kind) = check_path(p) {
            errors.push(ValidationError::new(ppath.field(name), kind));
        }
    }
    let proc_path = AttrPath::attr("process");
    for (name, p) in [
        ("chroot", &spec.process.chroot),
        ("stats_socket", &spec.process.stats_socket),
    ] {
        if let Some(p) = p {
            if let Err(kind) = check_path(p) {
                errors.push(ValidationError::new(proc_path.field(name), kind));
            }
        }
    }
    for (name, n) in [("user", &spec.process.user), ("group", &spec.process.group)] {
        if let Some(n) = n {
            if !is_valid_unix_name(n) {
                errors.push(ValidationError::new(
                    proc_path.field(name),
                    ErrorKind::InvalidName(n.clone()),
                ));
            }
        }
    }

    if errors.is_empty() {
        Ok(ValidatedSpec {
            routes,
            http_backend,
        })
    } else {
        Err(ValidationErrors(errors))
    }
}

/// The proxy VM's own addressing as far as it is known (unknown parts are `None` and their
/// checks skipped), for the checks that relate the NICs to each other and to the routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addressing {
    /// `public_nic.cidr`, e.g. `203.0.113.10/24`.
    pub public_cidr: Option<String>,
    /// `public_nic.gateway`.
    pub public_gateway: Option<IpAddr>,
    /// `private_nic.cidr`, e.g. `10.10.0.3/24`.
    pub private_cidr: Option<String>,
}

/// Checks the NICs against each other and the backends against the proxy's own addresses:
/// host addresses only, the public gateway inside the public subnet and not the proxy itself,
/// the private NIC outside the public subnet, no backend that loops into the proxy.
/// Malformed CIDRs and backends are left to [`validate`] and the VM's cloud config
/// validation (`waddle_proxmox::cloud_config`), which report them.
pub fn validate_addressing(a: &Addressing, spec: &ProxySpec) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let public = a.public_cidr.as_deref().and_then(|s| Cidr::parse(s).ok());
    let private = a.private_cidr.as_deref().and_then(|s| Cidr::parse(s).ok());
    let cidr_path = |nic: &str| AttrPath::attr(nic).field("cidr");
    for (nic, addr) in [("public_nic", public), ("private_nic", private)] {
        if let Some(role) = addr.and_then(|x| x.reserved()).map(Reserved::as_str) {
            let written = addr.map(|x| x.to_string());
            errors.push(ValidationError::new(
                cidr_path(nic),
                ErrorKind::SubnetAddress(written.unwrap_or_default(), role),
            ));
        }
    }
    if let (Some(p), Some(gw)) = (public, a.public_gateway) {
        let gpath = AttrPath::attr("public_nic").field("gateway");
        // A family mismatch is reported by the cloud-init validation.
        if gw.is_ipv4() == p.addr.is_ipv4() {
            if gw == p.addr {
                errors.push(ValidationError::new(gpath, ErrorKind::GatewayIsSelf(gw)));
            } else if !p.contains(gw) {
                errors.push(ValidationError::new(
                    gpath,
                    ErrorKind::GatewayOutsideSubnet {
                        gateway: gw,
                        subnet: p.subnet().to_string(),
                    },
                ));
            }
        }
    }
    if let (Some(p), Some(q)) = (public, private) {
        if p.contains(q.addr) || q.contains(p.addr) {
            errors.push(ValidationError::new(
                cidr_path("private_nic"),
                ErrorKind::PrivateInPublicSubnet {
                    private: q.to_string(),
                    public: p.subnet().to_string(),
                },
            ));
        }
    }
    let own: Vec<(IpAddr, &str)> = [(public, "public_nic.cidr"), (private, "private_nic.cidr")]
        .into_iter()
        .filter_map(|(x, nic)| x.map(|x| (x.addr, nic)))
        .collect();
    let backends = spec
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                AttrPath::attr("routes").index(i).field("backend"),
                r.backend.as_str(),
            )
        })
        .chain(
            spec.http_backend
                .as_deref()
                .map(|b| (AttrPath::attr("http_backend"), b)),
        );
    for (path, written) in backends {
        let Ok(b) = parse_backend(written) else {
            continue;
        };
        if let Some((_, nic)) = own.iter().find(|(ip, _)| *ip == b.ip) {
            errors.push(ValidationError::new(
                path,
                ErrorKind::BackendIsProxy {
                    backend: written.to_string(),
                    nic: (*nic).to_string(),
                },
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type KindCheck = fn(&ErrorKind) -> bool;
    use crate::spec::{seed_layout, RouteSpec};

    fn paths_of(e: &ValidationErrors) -> Vec<String> {
        e.errors().iter().map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn backend_parsing() {
        assert_eq!(
            parse_backend("10.10.0.2:3080").unwrap().to_string(),
            "10.10.0.2:3080"
        );
        assert_eq!(parse_backend("[::1]:443").unwrap().to_string(), "[::1]:443");
        assert_eq!(
            parse_backend("[FD00::0002]:443").unwrap().to_string(),
            "[fd00::2]:443"
        );
        assert_eq!(parse_backend("10.0.0.1:65535").unwrap().port, 65535);
        use ErrorKind as K;
        let cases: &[(&str, KindCheck)] = &[
            ("", |e| matches!(e, K::EmptyBackend)),
            ("10.0.0.1", |e| matches!(e, K::BackendMissingPort(_))),
            ("10.0.0.1:", |e| matches!(e, K::BackendMissingPort(_))),
            ("[::1]", |e| matches!(e, K::BackendMissingPort(_))),
            ("[::1]443", |e| matches!(e, K::BackendMissingPort(_))),
            ("10.0.0.1:0", |e| {
                matches!(e, K::BackendPortOutOfRange { port: 0, .. })
            }),
            ("10.0.0.1:65536", |e| {
                matches!(e, K::BackendPortOutOfRange { port: 65536, .. })
            }),
            ("10.0.0.1:99999999999999999999999", |e| {
                matches!(e, K::BackendInvalidPort { .. })
            }),
            ("10.0.0.1:https", |e| {
                matches!(e, K::BackendInvalidPort { .. })
            }),
            ("10.0.0.1:-1", |e| matches!(e, K::BackendInvalidPort { .. })),
            ("::1:443", |e| matches!(e, K::BackendUnbracketedIpv6(_))),
            ("backend.internal:443", |e| matches!(e, K::BackendNotIp(_))),
            ("[not-v6]:443", |e| matches!(e, K::BackendNotIp(_))),
            ("[10.0.0.1]:443", |e| matches!(e, K::BackendNotIp(_))),
            (
                "10.0.0.256:443",
                |e| matches!(e, K::BackendInvalidIpv4 { host, .. } if host == "10.0.0.256"),
            ),
            ("10.0.0:443", |e| matches!(e, K::BackendInvalidIpv4 { .. })),
        ];
        for (input, check) in cases {
            let err = parse_backend(input).expect_err(input);
            assert!(check(&err), "{input}: unexpected {err:?}");
        }
    }

    #[test]
    fn seed_validates() {
        let v = validate(&seed_layout("example.org")).unwrap();
        assert_eq!(v.routes.len(), 2);
        assert_eq!(v.routes[1].backend_name, "be_route_1");
        assert_eq!(
            v.route_for("a.teleport.example.org").map(|r| r.index),
            Some(0)
        );
        assert_eq!(v.route_for("x.apps.example.org").map(|r| r.index), Some(1));
        assert!(v.route_for("apps.example.org").is_none());
    }

    #[test]
    fn duplicates_and_overlaps_carry_both_paths() {
        let spec = ProxySpec {
            routes: vec![
                RouteSpec::new(["a.example.org", "*.apps.example.org"], "10.0.0.1:443"),
                RouteSpec::new(["b.example.org", "A.Example.org"], "10.0.0.2:443"),
                RouteSpec::new([".apps.example.org"], "10.0.0.3:443"),
                // within one route: `*.x` and `.x` are the same key
                RouteSpec::new(["*.t.example.org", ".T.example.org"], "10.0.0.4:443"),
                // exact under a wildcard and nested wildcards are fine
                RouteSpec::new(["x.apps.example.org", "*.example.org"], "10.0.0.5:443"),
            ],
            ..ProxySpec::default()
        };
        let err = validate(&spec).unwrap_err();
        assert_eq!(
            paths_of(&err),
            vec![
                "routes[1].hostnames[1]",
                "routes[2].hostnames[0]",
                "routes[3].hostnames[1]"
            ]
        );
        match &err.errors()[0].kind {
            ErrorKind::DuplicateHostname { key, first, .. } => {
                assert_eq!(key, "a.example.org");
                assert_eq!(first.to_string(), "routes[0].hostnames[0]");
            }
            other => panic!("unexpected {other:?}"),
        }
        match &err.errors()[1].kind {
            ErrorKind::DuplicateHostname { key, first, .. } => {
                assert_eq!(key, ".apps.example.org");
                assert_eq!(first.to_string(), "routes[0].hostnames[1]");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("routes[1].hostnames[1]"));
    }

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let mut spec = ProxySpec {
            routes: vec![
                RouteSpec::new(["ok.example.org"], "10.0.0.1:443"),
                RouteSpec::new(Vec::<String>::new(), "10.0.0.2:443"),
                RouteSpec::new(["*", "*.com", "bad_name.example.org"], "10.0.0.3"),
                RouteSpec::new(["c.example.org"], "10.0.0.3:0"),
            ],
            http_backend: Some("10.0.0.9:70000".into()),
            maxconn: 0,
            ..ProxySpec::default()
        };
        spec.timeouts.tunnel = Duration::ZERO;
        spec.timeouts.client = Duration::from_secs(30 * 86_400);
        spec.paths.exact_map = "relative/exact.map".into();
        spec.process.user = Some("Bad User".into());
        let err = validate(&spec).unwrap_err();
        assert_eq!(
            paths_of(&err),
            vec![
                "routes[1].hostnames",
                "routes[2].hostnames[0]",
                "routes[2].hostnames[1]",
                "routes[2].hostnames[2]",
                "routes[2].backend",
                "routes[3].backend",
                "http_backend",
                "maxconn",
                "proxy_timeouts.client",
                "proxy_timeouts.tunnel",
                "paths.exact_map",
                "process.user",
            ]
        );
        assert!(matches!(err.errors()[1].kind, ErrorKind::CatchAll(_)));
        assert!(matches!(
            err.errors()[2].kind,
            ErrorKind::WildcardSuffixTooShort(_)
        ));
        assert!(matches!(
            err.errors()[5].kind,
            ErrorKind::BackendPortOutOfRange { port: 0, .. }
        ));
    }

    #[test]
    fn listen_ports_checked() {
        let mut spec = seed_layout("example.org");
        spec.listen.http_port = 443;
        let err = validate(&spec).unwrap_err();
        assert_eq!(paths_of(&err), vec!["listen.http"]);
        spec.listen.http_port = 80;
        spec.listen.https_port = 0;
        assert_eq!(
            paths_of(&validate(&spec).unwrap_err()),
            vec!["listen.https"]
        );
        // without an http_backend the http port is irrelevant
        spec.listen.https_port = 443;
        spec.listen.http_port = 443;
        spec.http_backend = None;
        assert!(validate(&spec).is_ok());
    }

    #[test]
    fn a_typo_in_an_ip_is_not_called_a_dns_name() {
        let msg = parse_backend("10.10.0.256:443").unwrap_err().to_string();
        assert!(msg.contains("not a valid IPv4 address"), "{msg}");
        assert!(!msg.contains("DNS"), "{msg}");
        let msg = parse_backend("backend.internal:443")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("DNS names are refused"), "{msg}");
    }

    #[test]
    fn unspecified_backends_are_refused() {
        let mut spec = seed_layout("example.org");
        spec.routes[1].backend = "0.0.0.0:443".into();
        spec.http_backend = Some("[::]:80".into());
        let err = validate(&spec).unwrap_err();
        assert_eq!(paths_of(&err), vec!["routes[1].backend", "http_backend"]);
        assert!(err
            .errors()
            .iter()
            .all(|e| matches!(e.kind, ErrorKind::BackendUnspecified(_))));
    }

    fn addressing(public: &str, gw: Option<&str>, private: &str) -> Addressing {
        Addressing {
            public_cidr: Some(public.into()),
            public_gateway: gw.map(|g| g.parse().unwrap()),
            private_cidr: Some(private.into()),
        }
    }

    #[test]
    fn sane_addressing_passes() {
        let spec = seed_layout("example.org");
        let a = addressing("203.0.113.10/24", Some("203.0.113.1"), "10.10.0.3/24");
        assert_eq!(validate_addressing(&a, &spec), Ok(()));
        // point-to-point and host routes have no network/broadcast address
        let a = addressing("203.0.113.10/31", Some("203.0.113.11"), "10.10.0.0/32");
        assert_eq!(validate_addressing(&a, &spec), Ok(()));
        // unknown parts are skipped
        assert_eq!(validate_addressing(&Addressing::default(), &spec), Ok(()));
        // malformed input is left to the other validations
        let a = addressing("nonsense", Some("203.0.113.1"), "10.10.0.3");
        assert_eq!(validate_addressing(&a, &spec), Ok(()));
    }

    #[test]
    fn gateway_outside_the_public_subnet_is_refused() {
        let spec = seed_layout("example.org");
        let a = addressing("203.0.113.10/24", Some("198.51.100.1"), "10.10.0.3/24");
        let err = validate_addressing(&a, &spec).unwrap_err();
        assert_eq!(paths_of(&err), vec!["public_nic.gateway"]);
        let msg = err.errors()[0].kind.to_string();
        assert!(msg.contains("outside the subnet 203.0.113.0/24"), "{msg}");
        let a = addressing("203.0.113.10/24", Some("203.0.113.10"), "10.10.0.3/24");
        let err = validate_addressing(&a, &spec).unwrap_err();
        assert_eq!(paths_of(&err), vec!["public_nic.gateway"]);
        assert!(matches!(err.errors()[0].kind, ErrorKind::GatewayIsSelf(_)));
        let a = addressing("fd00:1::10/64", Some("fd00:2::1"), "10.10.0.3/24");
        assert_eq!(
            paths_of(&validate_addressing(&a, &spec).unwrap_err()),
            vec!["public_nic.gateway"]
        );
    }

    #[test]
    fn network_and_broadcast_addresses_are_refused() {
        let spec = seed_layout("example.org");
        let a = addressing("203.0.113.0/24", None, "10.10.0.255/24");
        let err = validate_addressing(&a, &spec).unwrap_err();
        assert_eq!(paths_of(&err), vec!["public_nic.cidr", "private_nic.cidr"]);
        assert_eq!(
            err.errors()[0].kind,
            ErrorKind::SubnetAddress("203.0.113.0/24".into(), "network")
        );
        assert_eq!(
            err.errors()[1].kind,
            ErrorKind::SubnetAddress("10.10.0.255/24".into(), "broadcast")
        );
    }

    #[test]
    fn private_nic_inside_the_public_subnet_is_refused() {
        let spec = seed_layout("example.org");
        let a = addressing("10.10.0.10/16", Some("10.10.0.1"), "10.10.5.3/24");
        let err = validate_addressing(&a, &spec).unwrap_err();
        assert_eq!(paths_of(&err), vec!["private_nic.cidr"]);
        assert!(err
            .to_string()
            .contains("inside the public subnet 10.10.0.0/16"));
    }

    #[test]
    fn backends_looping_into_the_proxy_are_refused() {
        let mut spec = seed_layout("example.org");
        spec.routes[0].backend = "10.10.0.3:3080".into();
        spec.http_backend = Some("203.0.113.10:80".into());
        let a = addressing("203.0.113.10/24", Some("203.0.113.1"), "10.10.0.3/24");
        let err = validate_addressing(&a, &spec).unwrap_err();
        assert_eq!(paths_of(&err), vec!["routes[0].backend", "http_backend"]);
        let msg = err.errors()[0].kind.to_string();
        assert!(
            msg.contains("private_nic.cidr") && msg.contains("loop"),
            "{msg}"
        );
    }

    #[test]
    fn only_strict_cidrs_are_checked() {
        let spec = seed_layout("example.org");
        let check = |public: &str, private: &str| {
            validate_addressing(&addressing(public, None, private), &spec)
        };
        // A signed or empty prefix is not a CIDR: left to the cloud-init validation (a
        // network address with a readable prefix would be refused here).
        let unreadable = [
            "203.0.113.0/+24",
            "203.0.113.0/-24",
            "203.0.113.0/",
            "203.0.113.0/33",
        ];
        assert!(unreadable.iter().all(|p| check(p, "10.10.0.3/24").is_ok()));
        // A leading zero is a digit like any other.
        assert_eq!(
            check("203.0.113.0/024", "10.10.0.3/24")
                .unwrap_err()
                .errors()[0]
                .kind,
            ErrorKind::SubnetAddress("203.0.113.0/24".into(), "network")
        );
        assert!(check("fd00:1::10/64", "fd00:1::3/64")
            .unwrap_err()
            .to_string()
            .contains("inside the public subnet fd00:1::/64"));
    }
}
