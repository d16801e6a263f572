//! Plan-time validation of a [`NodeSpec`]: every error with the attribute path of the value
//! (`apps[1].uri`, `github.teams_to_roles`), and the two checks that need more than one
//! configuration: PROXY protocol against the SNI routes ([`check_proxy_protocol`]) and an
//! upgrade path ([`check_upgrade`]).

use std::collections::BTreeMap;

use crate::path::AttrPath;
use crate::spec::{NodeSpec, Version, BUILTIN_ROLES, PROXMOX_APP, WEB_PORT};

/// What is wrong with a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0:?} is not a Teleport version: expected `<major>.<minor>.<patch>` such as `18.8.2` (no `v`)")]
    Version(String),
    #[error("Teleport {0} is not supported: teleport.yaml `version: v3` needs Teleport 13 or newer, and waddle is tested with 18")]
    TooOld(String),
    #[error("{value:?} is not a valid {what}: {why}")]
    Name {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("the public address {0:?} must be a host name without scheme or port (the proxy serves it on 443), e.g. `teleport.example.org`")]
    PublicAddrShape(String),
    #[error("{0:?} is not an email address")]
    Email(String),
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("a GitHub connector needs at least one `teams_to_roles` entry: without one, every GitHub user of the organization is refused at login")]
    NoTeamMapping,
    #[error("role {0:?} is neither defined in `roles` nor one of Teleport's built-in roles (access, editor, auditor)")]
    UnknownRole(String),
    #[error("app URI {0:?} must be `http://`, `https://` or `tcp://<host>:<port>`")]
    AppUri(String),
    #[error("app name {0:?} is used twice (first at {1}); app names must be unique")]
    DuplicateApp(String, String),
    #[error("app public address {addr:?} is outside the platform domain {domain:?}: it must be `{domain}` or end in `.{domain}`, or the SNI proxy never sends it to Teleport")]
    OutsideDomain { addr: String, domain: String },
    #[error("label key {0:?} is not valid: letters, digits, `-`, `_`, `.`, `/`, `*` only")]
    LabelKey(String),
}

/// One invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ValidationError {
    pub path: AttrPath,
    pub kind: ErrorKind,
}

/// Every invalid value of a spec (never empty as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }
}

struct Found(Vec<ValidationError>);

impl Found {
    fn push(&mut self, path: AttrPath, kind: ErrorKind) {
        self.0.push(ValidationError { path, kind });
    }
}

/// Why a DNS name is not one (`None`: it is).
pub fn dns_name_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("it is empty");
    }
    if s.len() > 253 {
        return Some("it is longer than 253 characters");
    }
    if s.ends_with('.') {
        return Some("it must not end with a dot");
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Some("it has an empty label");
        }
        if label.len() > 63 {
            return Some("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Some("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a label starts or ends with a hyphen");
        }
    }
    if s.rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Some("it looks like an IP address, not a DNS name");
    }
    None
}

fn check_name(f: &mut Found, path: AttrPath, what: &'static str, value: &str) {
    if let Some(why) = dns_name_problem(value) {
        f.push(
            path,
            ErrorKind::Name {
                what,
                value: value.into(),
                why,
            },
        );
    }
}

/// A resource name Teleport accepts in `metadata.name` and as an app subdomain label:
/// lower-case letters, digits and hyphens, 1-63, not starting or ending with a hyphen.
fn label_problem(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        Some("it is empty")
    } else if s.len() > 63 {
        Some("it is longer than 63 characters")
    } else if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Some("only lower-case letters, digits and hyphens are allowed (it becomes a DNS label)")
    } else if s.starts_with('-') || s.ends_with('-') {
        Some("it starts or ends with a hyphen")
    } else {
        None
    }
}

fn check_label(f: &mut Found, path: AttrPath, what: &'static str, value: &str) {
    if let Some(why) = label_problem(value) {
        f.push(
            path,
            ErrorKind::Name {
                what,
                value: value.into(),
                why,
            },
        );
    }
}

fn is_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && dns_name_problem(domain).is_none()
                && domain.contains('.')
        }
        None => false,
    }
}

/// Whether an app URI is `http(s)://host[:port][/path]` or `tcp://host:port`.
pub fn app_uri_ok(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port_ok = |a: &str, need_port: bool| -> bool {
        let (host, port) = if let Some(h) = a.strip_prefix('[') {
            match h.split_once(']') {
                Some((h, p)) => (h, p.strip_prefix(':')),
                None => return false,
            }
        } else {
            match a.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (a, None),
            }
        };
        let port_ok = match port {
            Some(p) => p.parse::<u16>().is_ok_and(|p| p > 0),
            None => !need_port,
        };
        !host.is_empty() && !host.chars().any(|c| c.is_whitespace() || c == '@') && port_ok
    };
    match scheme {
        "http" | "https" => host_port_ok(authority, false),
        "tcp" => rest == authority && host_port_ok(authority, true),
        _ => false,
    }
}

fn label_key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./*".contains(&b))
}

fn check_labels(f: &mut Found, path: AttrPath, labels: &BTreeMap<String, String>) {
    for k in labels.keys() {
        if !label_key_ok(k) {
            f.push(path.key(k), ErrorKind::LabelKey(k.clone()));
        }
    }
}

fn in_domain(addr: &str, domain: &str) -> bool {
    let (a, d) = (addr.to_ascii_lowercase(), domain.to_ascii_lowercase());
    a == d || a.ends_with(&format!(".{d}"))
}

/// Validate a spec; every error has the path of its attribute.
pub fn validate(s: &NodeSpec) -> Result<(), ValidationErrors> {
    let mut f = Found(Vec::new());
    match Version::parse(&s.version) {
        None => f.push(
            AttrPath::attr("teleport_version"),
            ErrorKind::Version(s.version.clone()),
        ),
        Some(v) if v.major < 13 => f.push(
            AttrPath::attr("teleport_version"),
            ErrorKind::TooOld(s.version.clone()),
        ),
        Some(_) => {}
    }
    check_name(&mut f, AttrPath::attr("domain"), "domain", &s.domain);
    if s.public_addr.contains("://") || s.public_addr.contains(':') || s.public_addr.contains('/') {
        f.push(
            AttrPath::attr("public_addr"),
            ErrorKind::PublicAddrShape(s.public_addr.clone()),
        );
    } else {
        check_name(
            &mut f,
            AttrPath::attr("public_addr"),
            "public address",
            &s.public_addr,
        );
    }
    check_name(
        &mut f,
        AttrPath::attr("cluster_name"),
        "cluster name",
        &s.cluster_name,
    );
    if let Some(e) = &s.acme_email {
        if !is_email(e) {
            f.push(AttrPath::attr("acme_email"), ErrorKind::Email(e.clone()));
        }
    }
    // GitHub
    let gh = AttrPath::attr("github");
    if s.github.client_id.trim().is_empty() {
        f.push(gh.field("client_id"), ErrorKind::Empty("client_id"));
    }
    check_label(
        &mut f,
        gh.field("connector_name"),
        "connector name",
        &s.github.connector_name,
    );
    let ttr = gh.field("teams_to_roles");
    if s.github.teams_to_roles.is_empty() {
        f.push(ttr.clone(), ErrorKind::NoTeamMapping);
    }
    for (i, m) in s.github.teams_to_roles.iter().enumerate() {
        let at = ttr.index(i);
        if m.organization.trim().is_empty() {
            f.push(at.field("organization"), ErrorKind::Empty("organization"));
        }
        if m.team.trim().is_empty() {
            f.push(at.field("team"), ErrorKind::Empty("team"));
        }
        if m.roles.is_empty() {
            f.push(at.field("roles"), ErrorKind::Empty("roles"));
        }
        for (j, r) in m.roles.iter().enumerate() {
            if !s.roles.contains_key(r) && !BUILTIN_ROLES.contains(&r.as_str()) {
                f.push(
                    at.field("roles").index(j),
                    ErrorKind::UnknownRole(r.clone()),
                );
            }
        }
    }
    // roles
    for (name, r) in &s.roles {
        let at = AttrPath::attr("roles").key(name);
        check_label(&mut f, at.clone(), "role name", name);
        check_labels(&mut f, at.field("node_labels"), &r.node_labels);
        check_labels(&mut f, at.field("app_labels"), &r.app_labels);
        check_labels(&mut f, at.field("kubernetes_labels"), &r.kubernetes_labels);
    }
    check_labels(&mut f, AttrPath::attr("ssh_labels"), &s.ssh_labels);
    // apps
    if let Some(uri) = &s.proxmox_ui_uri {
        if !app_uri_ok(uri) || uri.starts_with("tcp://") {
            f.push(
                AttrPath::attr("proxmox_ui_uri"),
                ErrorKind::AppUri(uri.clone()),
            );
        }
    }
    let mut first: BTreeMap<&str, String> = BTreeMap::new();
    if s.proxmox_ui_uri.is_some() {
        first.insert(PROXMOX_APP, "proxmox_ui_uri (the Proxmox UI app)".into());
    }
    for (i, a) in s.apps.iter().enumerate() {
        let at = AttrPath::attr("apps").index(i);
        check_label(&mut f, at.field("name"), "app name", &a.name);
        match first.get(a.name.as_str()) {
            Some(p) => f.push(
                at.field("name"),
                ErrorKind::DuplicateApp(a.name.clone(), p.clone()),
            ),
            None => {
                first.insert(&a.name, at.to_string());
            }
        }
        if !app_uri_ok(&a.uri) {
            f.push(at.field("uri"), ErrorKind::AppUri(a.uri.clone()));
        }
        if let Some(p) = &a.public_addr {
            if let Some(why) = dns_name_problem(p) {
                f.push(
                    at.field("public_addr"),
                    ErrorKind::Name {
                        what: "app public address",
                        value: p.clone(),
                        why,
                    },
                );
            } else if dns_name_problem(&s.domain).is_none() && !in_domain(p, &s.domain) {
                f.push(
                    at.field("public_addr"),
                    ErrorKind::OutsideDomain {
                        addr: p.clone(),
                        domain: s.domain.clone(),
                    },
                );
            }
        }
        check_labels(&mut f, at.field("labels"), &a.labels);
    }
    if f.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(f.0))
    }
}

/// One route of the SNI proxy in front (`waddle_sni_proxy.routes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoute {
    pub hostnames: Vec<String>,
    pub backend: String,
    pub proxy_protocol: bool,
}

/// Teleport and the SNI proxy disagree on PROXY protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "sni_routes[{index}] sends {route_says} to this node ({backend}) but proxy_protocol is {ours}: \
     {consequence}; set both to the same value"
)]
pub struct ProxyProtocolMismatch {
    pub index: usize,
    pub backend: String,
    pub route_says: &'static str,
    pub ours: bool,
    pub consequence: &'static str,
}

/// Every route whose backend is this node's web listener (`<ip>:3080`) must agree with
/// `proxy_protocol`: Teleport with `proxy_protocol: on` refuses connections without the
/// header, and without it reads the header as garbage TLS.
pub fn check_proxy_protocol(
    proxy_protocol: bool,
    node_ip: &str,
    routes: &[SniRoute],
) -> Result<(), Vec<ProxyProtocolMismatch>> {
    let ours = |backend: &str| {
        let b = backend.trim();
        let plain = format!("{node_ip}:{WEB_PORT}");
        let bracketed = format!("[{node_ip}]:{WEB_PORT}");
        b == plain || b == bracketed
    };
    let bad: Vec<_> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| ours(&r.backend) && r.proxy_protocol != proxy_protocol)
        .map(|(i, r)| ProxyProtocolMismatch {
            index: i,
            backend: r.backend.clone(),
            route_says: if r.proxy_protocol {
                "a PROXY v2 header"
            } else {
                "no PROXY header"
            },
            ours: proxy_protocol,
            consequence: if r.proxy_protocol {
                "Teleport would read the header as a broken TLS handshake and drop every connection"
            } else {
                "Teleport would wait for a PROXY header that never comes and drop every connection"
            },
        })
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

/// Why a version change cannot be applied in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error(
        "upgrading Teleport from {from} to {to} skips major version(s): Teleport refuses to start \
         on data written by a version more than one major release older. Upgrade one major at a \
         time: {path}"
    )]
    SkipsMajor {
        from: String,
        to: String,
        path: String,
    },
    #[error(
        "downgrading Teleport from {from} to {to} crosses a major version; Teleport does not \
         support running an older major on newer data. Keep {from_major}.x or restore a backup"
    )]
    MajorDowngrade {
        from: String,
        to: String,
        from_major: u32,
    },
}

/// A `teleport_version` change from `from` to `to`: the same major or the next one is applied
/// in place; a skip (or a major downgrade) is refused. Unparseable versions are left to
/// [`validate`].
pub fn check_upgrade(from: &str, to: &str) -> Result<(), UpgradeError> {
    let (Some(a), Some(b)) = (Version::parse(from), Version::parse(to)) else {
        return Ok(());
    };
    if b.major > a.major + 1 {
        let steps: Vec<String> = (a.major + 1..=b.major)
            .map(|m| {
                if m == b.major {
                    to.to_string()
                } else {
                    format!("{m}.x.y")
                }
            })
            .collect();
        return Err(UpgradeError::SkipsMajor {
            from: from.into(),
            to: to.into(),
            path: format!("apply {} in turn", steps.join(", then ")),
        });
    }
    if b.major < a.major {
        return Err(UpgradeError::MajorDowngrade {
            from: from.into(),
            to: to.into(),
            from_major: a.major,
        });
    }
    Ok(())
}
