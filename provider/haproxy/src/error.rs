//! Typed validation errors carrying the attribute path of the offending value.

use std::fmt;
use std::net::IpAddr;

/// One step of an attribute path: an attribute name or a list index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathStep {
    /// An attribute (object field), e.g. `routes`.
    Attr(String),
    /// A list element, e.g. `[2]`.
    Index(usize),
}

/// Attribute path of a value in the resource configuration, e.g. `routes[2].hostnames[0]`.
///
/// The provider turns this into a protocol `AttributePath` (one step per element) so the
/// diagnostic points at the exact value in the user's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AttrPath(pub Vec<PathStep>);

impl AttrPath {
    /// A path of a single top-level attribute.
    pub fn attr(name: &str) -> Self {
        AttrPath(vec![PathStep::Attr(name.to_string())])
    }

    /// This path extended by an attribute name.
    pub fn field(&self, name: &str) -> Self {
        let mut steps = self.0.clone();
        steps.push(PathStep::Attr(name.to_string()));
        AttrPath(steps)
    }

    /// This path extended by a list index.
    pub fn index(&self, i: usize) -> Self {
        let mut steps = self.0.clone();
        steps.push(PathStep::Index(i));
        AttrPath(steps)
    }

    /// The steps of the path, outermost first.
    pub fn steps(&self) -> &[PathStep] {
        &self.0
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                PathStep::Attr(name) if i == 0 => write!(f, "{name}")?,
                PathStep::Attr(name) => write!(f, ".{name}")?,
                PathStep::Index(idx) => write!(f, "[{idx}]")?,
            }
        }
        Ok(())
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    // ---- hostnames ----
    /// Empty hostname string.
    #[error("hostname is empty")]
    EmptyHostname,
    /// A route lists no hostname at all.
    #[error("a route needs at least one hostname")]
    NoHostnames,
    /// A pattern that matches every name (`*`, `.`, `*.`): the default drop would be unreachable.
    #[error(
        "`{0}` would match every server name, so the default drop could never be reached; \
         list exact names or `*.<suffix>` wildcards instead"
    )]
    CatchAll(String),
    /// A wildcard whose suffix has fewer than two labels (`*.com`, `.org`).
    #[error(
        "wildcard `{0}` needs a suffix of at least two labels (for example `*.apps.example.org`); \
         a wildcard over a top-level domain would capture names this proxy does not own"
    )]
    WildcardSuffixTooShort(String),
    /// `*` anywhere but as the whole leftmost label.
    #[error("`*` is only allowed as the whole leftmost label (`*.example.org`), got `{0}`")]
    MisplacedWildcard(String),
    /// Whitespace or a control character.
    #[error("hostname `{0}` contains whitespace or control characters")]
    Whitespace(String),
    /// A trailing dot (`example.org.`): TLS SNI never carries one (RFC 6066).
    #[error(
        "hostname `{0}` must not end with a dot: TLS clients send SNI without the trailing dot"
    )]
    TrailingDot(String),
    /// Two dots in a row or a leading dot inside the name.
    #[error("hostname `{0}` has an empty label")]
    EmptyLabel(String),
    /// A label longer than 63 octets (after IDNA conversion).
    #[error("label `{label}` of `{hostname}` is {len} characters long; the maximum is 63")]
    LabelTooLong {
        /// The hostname as written.
        hostname: String,
        /// The offending (A-)label.
        label: String,
        /// Its length.
        len: usize,
    },
    /// Whole name longer than 253 octets (after IDNA conversion).
    #[error("hostname `{hostname}` is {len} characters long (as an A-label); the maximum is 253")]
    NameTooLong {
        /// The hostname as written.
        hostname: String,
        /// Length of the ASCII form.
        len: usize,
    },
    /// A character outside letters, digits and hyphen (LDH rule), e.g. `_`.
    #[error(
        "hostname `{hostname}` contains `{ch}`; only letters, digits, hyphens and dots are allowed"
    )]
    InvalidCharacter {
        /// The hostname as written.
        hostname: String,
        /// The offending character.
        ch: char,
    },
    /// A label starting or ending with a hyphen.
    #[error("label `{label}` of `{hostname}` starts or ends with a hyphen")]
    HyphenPosition {
        /// The hostname as written.
        hostname: String,
        /// The offending label.
        label: String,
    },
    /// The IDNA (UTS #46) conversion refused the name.
    #[error("hostname `{0}` is not a valid internationalized domain name")]
    InvalidIdna(String),
    /// An all-numeric last label, i.e. an IP literal: SNI carries names only.
    #[error("`{0}` looks like an IP address; TLS SNI carries DNS names only")]
    IpLiteral(String),
    /// Same normalized key appears twice.
    #[error("`{hostname}` is already routed by {first} (same normalized name `{key}`)")]
    DuplicateHostname {
        /// The hostname as written.
        hostname: String,
        /// The normalized key both entries share (`a.example.org` or `.example.org`).
        key: String,
        /// Path of the first occurrence.
        first: AttrPath,
    },

    // ---- backends ----
    /// Empty backend string.
    #[error("backend is empty; expected `<ip>:<port>`")]
    EmptyBackend,
    /// No `:port`.
    #[error("backend `{0}` has no port; expected `<ip>:<port>` (IPv6: `[addr]:port`)")]
    BackendMissingPort(String),
    /// Port is not a number.
    #[error("backend `{backend}` has an invalid port `{port}`")]
    BackendInvalidPort {
        /// The backend as written.
        backend: String,
        /// The port text.
        port: String,
    },
    /// Port 0 or above 65535.
    #[error("backend `{backend}` port {port} is out of range 1..=65535")]
    BackendPortOutOfRange {
        /// The backend as written.
        backend: String,
        /// The parsed port value.
        port: u64,
    },
    /// IPv6 without brackets (`::1:443`).
    #[error("backend `{0}`: IPv6 addresses must be bracketed, e.g. `[fd00::2]:443`")]
    BackendUnbracketedIpv6(String),
    /// Host part is not an IP address.
    #[error(
        "backend `{0}`: the host must be an IP address; DNS names are refused because HAProxy \
         resolves them only at start-up and refuses to start when resolution fails"
    )]
    BackendNotIp(String),
    /// Host part made of digits and dots that is not an IPv4 address (`10.10.0.256`): a typo,
    /// not a DNS name.
    #[error("backend `{backend}`: `{host}` is not a valid IPv4 address (four numbers 0-255 separated by dots)")]
    BackendInvalidIpv4 {
        /// The backend as written.
        backend: String,
        /// The host part.
        host: String,
    },
    /// The unspecified address (`0.0.0.0`, `[::]`): nothing to connect to.
    #[error("backend `{0}`: the unspecified address is not a destination; use the backend's own IP address")]
    BackendUnspecified(String),
    /// The backend is one of the proxy's own addresses: every connection would loop back into
    /// the proxy.
    #[error("backend `{backend}` is the proxy's own address ({nic}); connections would loop back into the proxy")]
    BackendIsProxy {
        /// The backend as written.
        backend: String,
        /// Which NIC has that address (`public_nic.cidr` or `private_nic.cidr`).
        nic: String,
    },

    // ---- addressing ----
    /// No route at all.
    #[error("at least one route is required: a proxy without routes would drop every connection")]
    NoRoutes,
    /// An interface address that is the network or broadcast address of its own subnet.
    #[error("{0} is the {1} address of its subnet; an interface needs a host address")]
    SubnetAddress(String, &'static str),
    /// The default gateway is outside the NIC's subnet: the VM would have no default route.
    #[error("gateway {gateway} is outside the subnet {subnet} of the NIC; the VM would have no default route (and the apply would wait for it forever)")]
    GatewayOutsideSubnet {
        /// The gateway.
        gateway: IpAddr,
        /// The NIC's subnet (network address and prefix).
        subnet: String,
    },
    /// The NIC's own address used as its gateway.
    #[error("gateway {0} is the NIC's own address")]
    GatewayIsSelf(IpAddr),
    /// The private address lies in the public subnet (or the other way round).
    #[error("{private} lies inside the public subnet {public}; the private NIC needs a different subnet")]
    PrivateInPublicSubnet {
        /// The private NIC's address.
        private: String,
        /// The public subnet.
        public: String,
    },

    // ---- proxy settings ----
    /// A timeout of zero.
    #[error("timeout must be greater than zero")]
    TimeoutZero,
    /// A timeout HAProxy cannot represent (> 24 days, 2^31-1 ms).
    #[error("timeout {0} ms is too large; HAProxy accepts at most 2147483647 ms (about 24 days)")]
    TimeoutTooLarge(u128),
    /// A duration string that does not parse.
    #[error("invalid duration `{0}`; expected a number with unit ms, s, m, h or d (e.g. `30s`)")]
    InvalidDuration(String),
    /// maxconn of zero.
    #[error("maxconn must be at least 1")]
    MaxconnZero,
    /// Listen port 0.
    #[error("listen port must be in 1..=65535")]
    ListenPortZero,
    /// TLS and HTTP listeners on the same port.
    #[error("the HTTP listen port {0} is the same as the TLS listen port")]
    ListenPortClash(u16),
    /// A file path HAProxy or cloud-init could not use.
    #[error("path `{0}` must be absolute and must not contain whitespace, quotes or `#`")]
    InvalidPath(String),
    /// A log address or facility that is not usable.
    #[error("invalid log setting `{0}`")]
    InvalidLog(String),
    /// A name (user, group) HAProxy or cloud-init could not use.
    #[error("invalid name `{0}`: use lowercase letters, digits, `_` and `-`, starting with a letter or `_`")]
    InvalidName(String),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// One validation failure: where and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ValidationError {
    /// Attribute path of the offending value, e.g. `routes[2].hostnames[0]`.
    pub path: AttrPath,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl ValidationError {
    /// Builds an error at `path`.
    pub fn new(path: AttrPath, kind: ErrorKind) -> Self {
        ValidationError { path, kind }
    }
}

/// All validation failures of a spec (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} validation error(s): {}", .0.len(), join(.0))]
pub struct ValidationErrors(pub Vec<ValidationError>);

fn join(errs: &[ValidationError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }

    /// The errors of a spec built from some of the configured routes (`index[i]`: the
    /// configured position of `spec.routes[i]`), with every `routes[i]` in a path or a
    /// message renumbered to the configured position.
    pub fn renumber_routes(&self, index: &[usize]) -> ValidationErrors {
        let renumber = |p: &AttrPath| {
            let mut steps = p.0.clone();
            if let [PathStep::Attr(a), PathStep::Index(i), ..] = steps.as_mut_slice() {
                if a == "routes" {
                    *i = index.get(*i).copied().unwrap_or(*i);
                }
            }
            AttrPath(steps)
        };
        let errs = self.0.iter().map(|e| {
            let kind = match &e.kind {
                ErrorKind::DuplicateHostname {
                    hostname,
                    key,
                    first,
                } => ErrorKind::DuplicateHostname {
                    hostname: hostname.clone(),
                    key: key.clone(),
                    first: renumber(first),
                },
                k => k.clone(),
            };
            ValidationError::new(renumber(&e.path), kind)
        });
        ValidationErrors(errs.collect())
    }
}

/// Errors of the rendering functions.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The spec did not validate.
    #[error(transparent)]
    Invalid(#[from] ValidationErrors),
    /// YAML serialization failed (cloud-init).
    #[error("cloud-init YAML serialization failed: {0}")]
    Yaml(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbering_moves_route_paths_and_the_first_occurrence_only() {
        let routes = AttrPath::attr("routes");
        let errs = ValidationErrors(vec![
            ValidationError::new(
                routes.index(1).field("hostnames").index(0),
                ErrorKind::DuplicateHostname {
                    hostname: "a.example.org".into(),
                    key: "a.example.org".into(),
                    first: routes.index(0).field("hostnames").index(0),
                },
            ),
            ValidationError::new(routes.index(0).field("backend"), ErrorKind::NoHostnames),
            ValidationError::new(AttrPath::attr("maxconn"), ErrorKind::MaxconnZero),
        ]);
        let out = errs.renumber_routes(&[2, 5]);
        let shown: Vec<String> = out.errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            [
                "routes[5].hostnames[0]: `a.example.org` is already routed by \
                 routes[2].hostnames[0] (same normalized name `a.example.org`)",
                "routes[2].backend: a route needs at least one hostname",
                "maxconn: maxconn must be at least 1",
            ]
        );
    }
}
