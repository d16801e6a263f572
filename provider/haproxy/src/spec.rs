//! The typed configuration of an SNI proxy (what `waddle_sni_proxy` holds as routing state).
//!
//! # `waddle_sni_proxy` resource shape
//!
//! The resource (wired in `provider/waddle`) is expected to expose these attributes; the
//! routing ones map one to one onto [`ProxySpec`], the VM ones onto the VM layer (`waddle_proxmox::cloud_config`)
//! and the Proxmox calls. `modules/haproxy` is written against exactly this shape.
//!
//! ```hcl
//! resource "waddle_sni_proxy" "this" {
//!   # --- VM (Proxmox) ---
//!   name          = "sni-proxy"          # VM name and hostname
//!   node          = "pve"
//!   vmid          = 120                  # optional; null/unset = next free id (computed)
//!   storage       = "local-lvm"          # VM disk
//!   cores         = 1                    # default 1
//!   memory        = 512                  # MiB, default 512
//!   disk_size     = 8                    # GiB, default 8
//!   image_url     = "https://.../debian-12-genericcloud-amd64.qcow2"  # Proxmox download-url
//!   image_storage = "local"              # image + NoCloud seed ISO
//!   public_nic  = { bridge = "vmbr0", cidr = "203.0.113.10/24", gateway = "203.0.113.1" }
//!   private_nic = { bridge = "vmbr1", cidr = "10.10.0.3/24" }
//!   dns_servers = ["1.1.1.1", "9.9.9.9"]
//!   admin_user          = "waddle"
//!   ssh_authorized_keys = ["ssh-ed25519 AAAA... ops"]
//!
//!   # --- routing (ProxySpec); changes are applied in place ---
//!   routes = [
//!     { hostnames = ["teleport.example.org", ".teleport.example.org"], backend = "10.10.0.2:3080",
//!       proxy_protocol = false, check = true },
//!     { hostnames = ["*.apps.example.org"], backend = "10.10.0.30:443",
//!       proxy_protocol = false, check = true },
//!   ]
//!   http_backend   = "10.10.0.30:80"   # optional; port-80 plain TCP forward
//!   listen         = { https = 443, http = 80 }
//!   maxconn        = 4096
//!   proxy_timeouts = { connect = "5s", client = "1m", server = "1m", tunnel = "1h", inspect = "5s" }
//!
//!   # --- computed ---
//!   # haproxy_cfg, exact_map, wildcard_map, config_hash, public_address, private_address
//! }
//! ```
//!
//! Validation errors carry paths in these attribute names (`routes[1].hostnames[0]`,
//! `routes[0].backend`, `http_backend`, `listen.https`, `maxconn`, `proxy_timeouts.tunnel`);
//! `log`, `paths` and `process` are not resource attributes (fixed by the provider for the VM,
//! changed by tests).
//!
//! Hostname semantics are documented in [`crate::hostname`].

use std::net::IpAddr;
use std::time::Duration;

use crate::error::ErrorKind;

/// One SNI route: a set of hostnames passed, still encrypted, to one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Exact names (`teleport.example.org`) and subdomain patterns (`*.apps.example.org` or
    /// `.apps.example.org`). At least one.
    pub hostnames: Vec<String>,
    /// `<ipv4>:<port>` or `[<ipv6>]:<port>`. IP literals only (see [`ErrorKind::BackendNotIp`]).
    pub backend: String,
    /// Send a PROXY protocol v2 header to the backend (`send-proxy-v2`). Default `false`.
    pub proxy_protocol: bool,
    /// Layer-4 (TCP connect) health check of the backend. Default `true`.
    pub check: bool,
}

impl RouteSpec {
    /// A route with the defaults `proxy_protocol = false`, `check = true`.
    pub fn new<I, S>(hostnames: I, backend: &str) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RouteSpec {
            hostnames: hostnames.into_iter().map(Into::into).collect(),
            backend: backend.to_string(),
            proxy_protocol: false,
            check: true,
        }
    }

    /// Builder: set `proxy_protocol`.
    pub fn with_proxy_protocol(mut self, on: bool) -> Self {
        self.proxy_protocol = on;
        self
    }

    /// Builder: set `check`.
    pub fn with_check(mut self, on: bool) -> Self {
        self.check = on;
        self
    }

    /// Builder: the options that are set (the others keep their defaults).
    pub fn with_options(mut self, proxy_protocol: Option<bool>, check: Option<bool>) -> Self {
        self.proxy_protocol = proxy_protocol.unwrap_or(self.proxy_protocol);
        self.check = check.unwrap_or(self.check);
        self
    }
}

/// Listening sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// Address to bind; `None` binds all IPv4 addresses (`bind :443`). Tests use a 127.30.x.y.
    pub address: Option<IpAddr>,
    /// TLS (SNI) port. Default 443.
    pub https_port: u16,
    /// Plain TCP port forwarded to `http_backend` (only rendered when `http_backend` is set).
    /// Default 80.
    pub http_port: u16,
}

impl ListenSpec {
    /// The default listener with the ports that are set (`Err(port)`: not a TCP port).
    pub fn with_ports(https: Option<u32>, http: Option<u32>) -> Result<Self, u32> {
        let d = ListenSpec::default();
        let port = |p: Option<u32>, d: u16| p.map_or(Ok(d), |x| u16::try_from(x).map_err(|_| x));
        Ok(ListenSpec {
            https_port: port(https, d.https_port)?,
            http_port: port(http, d.http_port)?,
            ..d
        })
    }
}

impl Default for ListenSpec {
    fn default() -> Self {
        ListenSpec {
            address: None,
            https_port: 443,
            http_port: 80,
        }
    }
}

/// Timeouts. Defaults and why:
///
/// * `connect` 5s — backends are on the private bridge; a healthy one answers in milliseconds.
/// * `client` / `server` 1m — inactivity while the connection is being set up / before the
///   tunnel is established on both sides.
/// * `tunnel` 1h — once both sides are connected this replaces client/server inactivity:
///   Teleport sessions, kubectl exec/port-forward and WebSockets stay idle for a long time.
/// * `inspect` 5s — how long to wait for a complete TLS ClientHello (`tcp-request
///   inspect-delay`); a client that sends nothing or too little is dropped after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// `timeout connect`.
    pub connect: Duration,
    /// `timeout client`.
    pub client: Duration,
    /// `timeout server`.
    pub server: Duration,
    /// `timeout tunnel`.
    pub tunnel: Duration,
    /// `tcp-request inspect-delay` on the TLS frontend.
    pub inspect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            client: Duration::from_secs(60),
            server: Duration::from_secs(60),
            tunnel: Duration::from_secs(3600),
            inspect: Duration::from_secs(5),
        }
    }
}

impl Timeouts {
    /// Every timeout by its `proxy_timeouts` name, with what it bounds.
    pub const FIELDS: [(&'static str, &'static str); 5] = [
        ("connect", "Connect timeout to a backend."),
        (
            "client",
            "Client inactivity before the tunnel is established.",
        ),
        (
            "server",
            "Server inactivity before the tunnel is established.",
        ),
        (
            "tunnel",
            "Inactivity of an established connection (`timeout tunnel`).",
        ),
        (
            "inspect",
            "How long to wait for a complete TLS ClientHello (`tcp-request inspect-delay`).",
        ),
    ];

    /// The timeout named `name` (one of [`Timeouts::FIELDS`]).
    pub fn get(&self, name: &str) -> Option<Duration> {
        Some(match name {
            "connect" => self.connect,
            "client" => self.client,
            "server" => self.server,
            "tunnel" => self.tunnel,
            "inspect" => self.inspect,
            _ => return None,
        })
    }

    /// Parses the resource's `proxy_timeouts` strings (see [`parse_duration`]); errors carry
    /// the paths `proxy_timeouts.<name>`. Range checks happen in [`crate::validate()`].
    pub fn parse(
        connect: &str,
        client: &str,
        server: &str,
        tunnel: &str,
        inspect: &str,
    ) -> Result<Timeouts, crate::error::ValidationErrors> {
        let base = crate::error::AttrPath::attr("proxy_timeouts");
        let mut errs = Vec::new();
        let mut get = |name: &str, s: &str| match parse_duration(s) {
            Ok(d) => d,
            Err(kind) => {
                errs.push(crate::error::ValidationError::new(base.field(name), kind));
                Duration::ZERO
            }
        };
        let t = Timeouts {
            connect: get("connect", connect),
            client: get("client", client),
            server: get("server", server),
            tunnel: get("tunnel", tunnel),
            inspect: get("inspect", inspect),
        };
        if errs.is_empty() {
            Ok(t)
        } else {
            Err(crate::error::ValidationErrors(errs))
        }
    }

    /// [`Timeouts::parse`] of optional strings (`proxy_timeouts` with attributes left out):
    /// an unset timeout takes its default.
    pub fn parse_or_default(
        connect: Option<&str>,
        client: Option<&str>,
        server: Option<&str>,
        tunnel: Option<&str>,
        inspect: Option<&str>,
    ) -> Result<Timeouts, crate::error::ValidationErrors> {
        let d = Timeouts::default();
        let s =
            |x: Option<&str>, def: Duration| x.map_or_else(|| format_duration(def), String::from);
        Timeouts::parse(
            &s(connect, d.connect),
            &s(client, d.client),
            &s(server, d.server),
            &s(tunnel, d.tunnel),
            &s(inspect, d.inspect),
        )
    }
}

/// Where HAProxy sends its logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// No logging at all.
    Disabled,
    /// `log stdout format raw` — for foreground runs (tests, containers).
    Stdout,
    /// Syslog to a unix socket path (`/dev/log`) or `ip:port`.
    Syslog {
        /// `/dev/log` or `127.0.0.1:514`.
        address: String,
        /// Syslog facility, e.g. `local0`.
        facility: String,
    },
}

impl Default for LogTarget {
    /// `/dev/log` with facility `local0` (Debian's rsyslog/journald pick it up).
    fn default() -> Self {
        LogTarget::Syslog {
            address: "/dev/log".to_string(),
            facility: "local0".to_string(),
        }
    }
}

/// File locations on the machine running HAProxy. The config references the maps by these
/// absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePaths {
    /// `/etc/haproxy/haproxy.cfg` by default.
    pub config: String,
    /// Exact-name map, `/etc/haproxy/maps/exact.map` by default.
    pub exact_map: String,
    /// Wildcard-suffix map, `/etc/haproxy/maps/wildcard.map` by default.
    pub wildcard_map: String,
}

impl Default for FilePaths {
    fn default() -> Self {
        FilePaths {
            config: "/etc/haproxy/haproxy.cfg".to_string(),
            exact_map: "/etc/haproxy/maps/exact.map".to_string(),
            wildcard_map: "/etc/haproxy/maps/wildcard.map".to_string(),
        }
    }
}

impl FilePaths {
    /// All three files inside `dir` (`haproxy.cfg`, `exact.map`, `wildcard.map`).
    pub fn in_dir(dir: &std::path::Path) -> Self {
        let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
        FilePaths {
            config: p("haproxy.cfg"),
            exact_map: p("exact.map"),
            wildcard_map: p("wildcard.map"),
        }
    }
}

/// Process settings of the `global` section. The default matches Debian's packaged service
/// (run by systemd as root, dropping to `haproxy:haproxy` in a chroot, with an admin socket
/// that can hand listening sockets over to the new process on reload). Tests use
/// [`ProcessSpec::unprivileged`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// `user` to drop privileges to.
    pub user: Option<String>,
    /// `group` to drop privileges to.
    pub group: Option<String>,
    /// `chroot` directory.
    pub chroot: Option<String>,
    /// `stats socket <path> mode 660 level admin expose-fd listeners` (seamless reloads).
    pub stats_socket: Option<String>,
}

impl Default for ProcessSpec {
    fn default() -> Self {
        ProcessSpec {
            user: Some("haproxy".to_string()),
            group: Some("haproxy".to_string()),
            chroot: Some("/var/lib/haproxy".to_string()),
            stats_socket: Some("/run/haproxy/admin.sock".to_string()),
        }
    }
}

impl ProcessSpec {
    /// No user switch, no chroot, no socket: runs as whoever starts it (tests, `-db`).
    pub fn unprivileged() -> Self {
        ProcessSpec {
            user: None,
            group: None,
            chroot: None,
            stats_socket: None,
        }
    }
}

/// The default connection limit ([`ProxySpec::maxconn`]).
pub const DEFAULT_MAXCONN: u32 = 4096;

/// Full SNI proxy configuration. `ProxySpec::default()` is an empty route table with the
/// production defaults (ports 443/80, maxconn 4096, the [`Timeouts`] defaults, syslog to
/// `/dev/log`, Debian file paths and process settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySpec {
    /// SNI routes, in order (the order fixes backend names `be_route_<index>`).
    pub routes: Vec<RouteSpec>,
    /// Port-80 plain TCP forward target (`<ip>:<port>`); `None` renders no HTTP frontend.
    pub http_backend: Option<String>,
    /// Listening sockets.
    pub listen: ListenSpec,
    /// Process-wide and per-frontend connection limit. Default 4096 (well within a
    /// 512 MB VM: a passthrough connection costs two 16 KB buffers plus kernel socket memory).
    pub maxconn: u32,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Logging.
    pub log: LogTarget,
    /// File paths.
    pub paths: FilePaths,
    /// Process settings.
    pub process: ProcessSpec,
}

impl Default for ProxySpec {
    fn default() -> Self {
        ProxySpec {
            routes: Vec::new(),
            http_backend: None,
            listen: ListenSpec::default(),
            maxconn: DEFAULT_MAXCONN,
            timeouts: Timeouts::default(),
            log: LogTarget::default(),
            paths: FilePaths::default(),
            process: ProcessSpec::default(),
        }
    }
}

/// The seed layout for a domain (what `modules/haproxy` renders by default):
/// `teleport.<domain>`, `.teleport.<domain>` and `proxmox.<domain>` to Teleport
/// (`10.10.0.2:3080`), `*.apps.<domain>` to the gateway VIP (`10.10.0.30:443`), port 80 to
/// the VIP (`10.10.0.30:80`).
pub fn seed_layout(domain: &str) -> ProxySpec {
    ProxySpec {
        routes: vec![
            RouteSpec::new(
                [
                    format!("teleport.{domain}"),
                    format!(".teleport.{domain}"),
                    format!("proxmox.{domain}"),
                ],
                "10.10.0.2:3080",
            ),
            RouteSpec::new([format!("*.apps.{domain}")], "10.10.0.30:443"),
        ],
        http_backend: Some("10.10.0.30:80".to_string()),
        ..ProxySpec::default()
    }
}

/// Parses a duration in HAProxy-like notation: a positive integer with unit `ms`, `s`, `m`,
/// `h` or `d` (`"5s"`, `"1m"`, `"1h"`, `"250ms"`). A bare number means milliseconds, as in
/// HAProxy.
pub fn parse_duration(s: &str) -> Result<Duration, ErrorKind> {
    let bad = || ErrorKind::InvalidDuration(s.to_string());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "" | "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(bad()),
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

/// Formats a duration the way HAProxy reads it, choosing the largest exact unit
/// (`3600000 ms` -> `1h`, `1500 ms` -> `1500ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0ms".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_ports_that_are_unset_keep_their_defaults() {
        let r = RouteSpec::new(["a.example.org"], "10.0.0.1:443").with_options(None, None);
        assert!(!r.proxy_protocol && r.check);
        let r = r.with_options(Some(true), Some(false));
        assert!(r.proxy_protocol && !r.check);
        let l = ListenSpec::with_ports(None, Some(8080)).unwrap();
        assert_eq!((l.https_port, l.http_port, l.address), (443, 8080, None));
        assert_eq!(ListenSpec::with_ports(Some(65536), None), Err(65536));
    }

    #[test]
    fn every_field_is_named_once_and_has_its_default() {
        let d = Timeouts::default();
        let names: Vec<&str> = Timeouts::FIELDS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["connect", "client", "server", "tunnel", "inspect"]);
        assert_eq!(d.get("connect"), Some(d.connect));
        assert_eq!(d.get("client"), Some(d.client));
        assert_eq!(d.get("server"), Some(d.server));
        assert_eq!(d.get("tunnel"), Some(d.tunnel));
        assert_eq!(d.get("inspect"), Some(d.inspect));
        assert_eq!(d.get("idle"), None);
    }

    #[test]
    fn durations_round_trip() {
        for (s, ms) in [
            ("5s", 5000u64),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("250ms", 250),
            ("250", 250),
            ("2d", 172_800_000),
        ] {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        for bad in ["", "s", "5x", "-1s", "1.5s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Timeouts::parse("5s", "1m", "1m", "1h", "5s").unwrap(),
            Timeouts::default()
        );
        let err = Timeouts::parse("5s", "soon", "1m", "1h", "5x").unwrap_err();
        let paths: Vec<String> = err.errors().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, ["proxy_timeouts.client", "proxy_timeouts.inspect"]);
    }

    #[test]
    fn seed_layout_shape() {
        let s = seed_layout("example.org");
        assert_eq!(s.routes.len(), 2);
        assert!(s.routes[0]
            .hostnames
            .contains(&".teleport.example.org".to_string()));
        assert_eq!(s.routes[1].backend, "10.10.0.30:443");
        assert_eq!(s.http_backend.as_deref(), Some("10.10.0.30:80"));
        assert!(!s.routes[0].proxy_protocol && s.routes[0].check);
    }
}
