//! Rendering of `haproxy.cfg` and the two map files.
//!
//! # Lookup design
//!
//! The TLS frontend waits (`tcp-request inspect-delay`) for a complete ClientHello, rejects
//! anything that is not one (`req.ssl_hello_type 1`), then picks the backend:
//!
//! 1. `req.ssl_sni,lower,map(<exact.map>)` — exact names, keys are full names;
//! 2. `req.ssl_sni,lower,map_end(<wildcard.map>)` — subdomain patterns, keys are the suffix
//!    **with its leading dot** (`.apps.example.org`), so a name matches only if it ends with
//!    `.apps.example.org`: `a.apps.example.org` and `a.b.apps.example.org` do,
//!    `apps.example.org`, `evilapps.example.org` and `apps.example.org.attacker.test` do not.
//!    (`map_dom` is not used: it also matches the bare suffix.) Entries are written longest
//!    suffix first, so the most specific wildcard wins.
//!
//! Each dynamic `use_backend` is guarded by the same lookup with `-m found`; anything else
//! (unknown names, no SNI) falls to `default_backend be_drop`, which rejects the connection.
//! Both lookups are hash/list lookups in map files: adding routes adds map lines, not rules.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::error::ValidationErrors;
use crate::hostname::HostPattern;
use crate::spec::{format_duration, LogTarget, ProxySpec};
use crate::validate::{validate, ValidatedSpec};

/// Name of the `defaults` section.
pub const DEFAULTS_NAME: &str = "waddle_tcp";
/// Name of the drop backend.
pub const DROP_BACKEND: &str = "be_drop";

/// Log format of the TLS frontend: HAProxy's TCP log plus the captured SNI.
pub const TLS_LOG_FORMAT: &str = "%ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq sni=%[capture.req.hdr(0)]";

/// The rendered files and their combined hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Contents of `haproxy.cfg`.
    pub haproxy_cfg: String,
    /// Contents of the exact-name map (`<name> <backend>` lines).
    pub exact_map: String,
    /// Contents of the wildcard map (`.<suffix> <backend>` lines, longest suffix first).
    pub wildcard_map: String,
    /// Lowercase hex SHA-256 over the three files (see [`config_hash`]).
    pub config_hash: String,
    /// Where each file goes (copied from the spec).
    pub paths: crate::spec::FilePaths,
}

/// One file to write on the target machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path.
    pub path: String,
    /// Contents.
    pub content: String,
    /// Octal permissions, e.g. `0644`.
    pub permissions: &'static str,
}

impl Rendered {
    /// The three files with their paths: config, exact map, wildcard map.
    pub fn files(&self) -> Vec<RenderedFile> {
        vec![
            RenderedFile {
                path: self.paths.config.clone(),
                content: self.haproxy_cfg.clone(),
                permissions: "0644",
            },
            RenderedFile {
                path: self.paths.exact_map.clone(),
                content: self.exact_map.clone(),
                permissions: "0644",
            },
            RenderedFile {
                path: self.paths.wildcard_map.clone(),
                content: self.wildcard_map.clone(),
                permissions: "0644",
            },
        ]
    }

    /// Writes the three files to their paths, creating parent directories.
    pub fn write_files(&self) -> std::io::Result<()> {
        for f in self.files() {
            let path = std::path::Path::new(&f.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, &f.content)?;
        }
        Ok(())
    }
}

/// SHA-256 (lowercase hex) over the config and both maps, each prefixed by its role and
/// length so no two different file sets hash alike. The same function serves to hash the
/// live files read back from the VM.
pub fn config_hash(haproxy_cfg: &str, exact_map: &str, wildcard_map: &str) -> String {
    let mut h = Sha256::new();
    for (role, content) in [
        ("haproxy.cfg", haproxy_cfg),
        ("exact.map", exact_map),
        ("wildcard.map", wildcard_map),
    ] {
        h.update(role.as_bytes());
        h.update([0u8]);
        h.update((content.len() as u64).to_be_bytes());
        h.update(content.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Validates and renders a spec.
pub fn render(spec: &ProxySpec) -> Result<Rendered, ValidationErrors> {
    let v = validate(spec)?;
    Ok(render_validated(spec, &v))
}

fn bind_addr(spec: &ProxySpec, port: u16) -> String {
    match spec.listen.address {
        None => format!(":{port}"),
        Some(std::net::IpAddr::V4(ip)) => format!("{ip}:{port}"),
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
    }
}

/// Like [`render`], but the map file names carry the first 12 hex digits of their content's
/// SHA-256 (`/etc/haproxy/maps/exact.<hash12>.map`). The config then names exactly the maps
/// it was rendered with, so an in-place update can write the new maps beside the old ones
/// (the running HAProxy never sees half a change), check the new config with `haproxy -c`
/// and swap only the config file — see [`update_script`].
pub fn render_versioned(spec: &ProxySpec) -> Result<Rendered, ValidationErrors> {
    let v = validate(spec)?;
    let mut spec = spec.clone();
    spec.paths.exact_map = versioned_path(&spec.paths.exact_map, &render_exact_map(&v));
    spec.paths.wildcard_map = versioned_path(&spec.paths.wildcard_map, &render_wildcard_map(&v));
    Ok(render_validated(&spec, &v))
}

fn split_ext(path: &str) -> (&str, &str) {
    let file_start = path.rfind('/').map(|i| i + 1).unwrap_or(0);
    match path[file_start..].rfind('.') {
        Some(dot) if dot > 0 => path.split_at(file_start + dot),
        _ => (path, ""),
    }
}

fn versioned_path(path: &str, content: &str) -> String {
    let digest = hex::encode(Sha256::digest(content.as_bytes()));
    let (stem, ext) = split_ext(path);
    format!("{stem}.{}{ext}", &digest[..12])
}

/// Shell script (POSIX `sh`) that applies a [`render_versioned`] rendering on the VM after the
/// caller has written both maps to their (versioned) paths and the config to
/// `<config>.new` — e.g. through the guest agent's file calls — and the
/// hash marker to `<marker_path>.new`:
///
/// 1. `haproxy -c -f <config>.new`; on failure the new config is removed, the running
///    HAProxy and its files stay as they were, HAProxy's message goes to stderr and the script
///    exits 1;
/// 2. renames `<config>.new` over `<config>` and the marker likewise (atomic renames);
/// 3. runs `reload_cmd` — on the VM `systemctl reload haproxy` (Debian's master-worker
///    reload: new workers take over the listening sockets, old workers finish their
///    established connections);
/// 4. deletes older versioned maps of the same names.
///
/// It prints the applied `config_hash` on success.
pub fn update_script(r: &Rendered, marker_path: &str, reload_cmd: &str) -> String {
    let cfg = &r.paths.config;
    let mut s = String::new();
    s.push_str("set -u\n");
    let _ = writeln!(
        s,
        "if ! out=$(haproxy -c -f {cfg}.new 2>&1); then rm -f {cfg}.new {marker_path}.new; echo \"$out\" >&2; exit 1; fi"
    );
    let _ = writeln!(s, "mv -f {cfg}.new {cfg}");
    let _ = writeln!(s, "mv -f {marker_path}.new {marker_path}");
    let _ = writeln!(s, "{reload_cmd} || exit 1");
    for current in [&r.paths.exact_map, &r.paths.wildcard_map] {
        let (stem, ext) = split_ext(current);
        // stem is `<dir>/exact.<hash12>`; strip the hash to get the glob of all versions
        let base = stem.rsplit_once('.').map(|(b, _)| b).unwrap_or(stem);
        let _ = writeln!(
            s,
            "for f in {base}.*{ext}; do [ \"$f\" = {current} ] || rm -f \"$f\"; done"
        );
    }
    let _ = writeln!(s, "echo {}", r.config_hash);
    s
}

/// The exact and wildcard map paths a rendered `haproxy.cfg` refers to (from its
/// `use_backend` lookups), or `None` if `cfg` is not one of ours. For drift detection: read the
/// live config through the guest agent, then these two files, and compare
/// [`config_hash`]`(cfg, exact, wildcard)` with the state's `config_hash`.
pub fn live_map_paths(cfg: &str) -> Option<(String, String)> {
    let find = |conv: &str| {
        let needle = format!("req.ssl_sni,lower,{conv}(");
        cfg.lines()
            .map(str::trim_start)
            .filter(|l| l.starts_with("use_backend "))
            .find_map(|l| {
                let start = l.find(&needle)? + needle.len();
                let len = l[start..].find(')')?;
                Some(l[start..start + len].to_string())
            })
    };
    Some((find("map")?, find("map_end")?))
}

/// Renders an already validated spec (`v` must come from `validate(spec)`).
pub fn render_validated(spec: &ProxySpec, v: &ValidatedSpec) -> Rendered {
    let exact_map = render_exact_map(v);
    let wildcard_map = render_wildcard_map(v);
    let haproxy_cfg = render_cfg(spec, v);
    let config_hash = config_hash(&haproxy_cfg, &exact_map, &wildcard_map);
    Rendered {
        haproxy_cfg,
        exact_map,
        wildcard_map,
        config_hash,
        paths: spec.paths.clone(),
    }
}

fn render_exact_map(v: &ValidatedSpec) -> String {
    let mut entries: Vec<(String, &str)> = v
        .routes
        .iter()
        .flat_map(|r| {
            r.patterns.iter().filter_map(move |p| match p {
                HostPattern::Exact(n) => Some((n.clone(), r.backend_name.as_str())),
                HostPattern::Subdomains(_) => None,
            })
        })
        .collect();
    entries.sort();
    let mut out = String::from("# waddle-haproxy: exact SNI -> backend (generated)\n");
    for (k, b) in entries {
        let _ = writeln!(out, "{k} {b}");
    }
    out
}

fn render_wildcard_map(v: &ValidatedSpec) -> String {
    let mut entries: Vec<(String, &str)> = v
        .routes
        .iter()
        .flat_map(|r| {
            r.patterns.iter().filter_map(move |p| match p {
                HostPattern::Subdomains(_) => Some((p.key(), r.backend_name.as_str())),
                HostPattern::Exact(_) => None,
            })
        })
        .collect();
    // Longest suffix first: map_end returns the first matching line, so the most specific
    // wildcard wins. Ties broken by key for determinism.
    entries.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::from(
        "# waddle-haproxy: .suffix -> backend, longest first; matched with map_end (generated)\n",
    );
    for (k, b) in entries {
        let _ = writeln!(out, "{k} {b}");
    }
    out
}

fn render_cfg(spec: &ProxySpec, v: &ValidatedSpec) -> String {
    let t = &spec.timeouts;
    let logging = !matches!(spec.log, LogTarget::Disabled);
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Generated by waddle-haproxy for waddle_sni_proxy. Do not edit: changes are replaced."
    );
    c.push_str("global\n");
    match &spec.log {
        LogTarget::Disabled => {}
        LogTarget::Stdout => c.push_str("    log stdout format raw local0\n"),
        LogTarget::Syslog { address, facility } => {
            let _ = writeln!(c, "    log {address} {facility}");
        }
    }
    let _ = writeln!(c, "    maxconn {}", spec.maxconn);
    if let Some(chroot) = &spec.process.chroot {
        let _ = writeln!(c, "    chroot {chroot}");
    }
    if let Some(sock) = &spec.process.stats_socket {
        let _ = writeln!(
            c,
            "    stats socket {sock} mode 660 level admin expose-fd listeners"
        );
        c.push_str("    stats timeout 30s\n");
    }
    if let Some(user) = &spec.process.user {
        let _ = writeln!(c, "    user {user}");
    }
    if let Some(group) = &spec.process.group {
        let _ = writeln!(c, "    group {group}");
    }
    c.push('\n');

    let _ = writeln!(c, "defaults {DEFAULTS_NAME}");
    c.push_str("    mode tcp\n");
    if logging {
        c.push_str("    log global\n");
        c.push_str("    option dontlognull\n");
    }
    let _ = writeln!(c, "    maxconn {}", spec.maxconn);
    let _ = writeln!(c, "    timeout connect {}", format_duration(t.connect));
    let _ = writeln!(c, "    timeout client {}", format_duration(t.client));
    let _ = writeln!(c, "    timeout server {}", format_duration(t.server));
    let _ = writeln!(c, "    timeout tunnel {}", format_duration(t.tunnel));
    c.push_str("    default-server inter 5s fastinter 1s downinter 5s rise 2 fall 3\n");
    c.push('\n');

    let exact = format!("req.ssl_sni,lower,map({})", spec.paths.exact_map);
    let wild = format!("req.ssl_sni,lower,map_end({})", spec.paths.wildcard_map);
    let _ = writeln!(c, "frontend ft_tls from {DEFAULTS_NAME}");
    let _ = writeln!(c, "    bind {}", bind_addr(spec, spec.listen.https_port));
    let _ = writeln!(
        c,
        "    tcp-request inspect-delay {}",
        format_duration(t.inspect)
    );
    c.push_str("    tcp-request content reject unless { req.ssl_hello_type 1 }\n");
    if logging {
        c.push_str(
            "    tcp-request content capture req.ssl_sni len 253 if { req.ssl_sni -m found }\n",
        );
    }
    c.push_str("    tcp-request content accept if { req.ssl_hello_type 1 }\n");
    if logging {
        let _ = writeln!(c, "    log-format \"{TLS_LOG_FORMAT}\"");
    }
    let _ = writeln!(c, "    use_backend %[{exact}] if {{ {exact} -m found }}");
    let _ = writeln!(c, "    use_backend %[{wild}] if {{ {wild} -m found }}");
    let _ = writeln!(c, "    default_backend {DROP_BACKEND}");
    c.push('\n');

    if let Some(http) = &v.http_backend {
        let _ = writeln!(c, "frontend ft_http from {DEFAULTS_NAME}");
        let _ = writeln!(c, "    bind {}", bind_addr(spec, spec.listen.http_port));
        if logging {
            c.push_str("    option tcplog\n");
        }
        c.push_str("    default_backend be_http\n");
        c.push('\n');
        let _ = writeln!(c, "backend be_http from {DEFAULTS_NAME}");
        let _ = writeln!(c, "    server http {http} check");
        c.push('\n');
    }

    let _ = writeln!(c, "# Unknown names, no SNI: closed without a response.");
    let _ = writeln!(c, "backend {DROP_BACKEND} from {DEFAULTS_NAME}");
    c.push_str("    tcp-request content reject\n");

    for r in &v.routes {
        c.push('\n');
        let names: Vec<String> = r
            .patterns
            .iter()
            .map(|p| match p {
                HostPattern::Exact(n) => n.clone(),
                HostPattern::Subdomains(s) => format!("*.{s}"),
            })
            .collect();
        let _ = writeln!(c, "# routes[{}]: {}", r.index, names.join(" "));
        let _ = writeln!(c, "backend {} from {DEFAULTS_NAME}", r.backend_name);
        let mut line = format!("    server s0 {}", r.backend);
        if r.check {
            line.push_str(" check");
        }
        if r.proxy_protocol {
            line.push_str(" send-proxy-v2");
        }
        c.push_str(&line);
        c.push('\n');
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{seed_layout, RouteSpec};

    #[test]
    fn maps_use_dotted_suffix_keys_longest_first() {
        let spec = ProxySpec {
            routes: vec![
                RouteSpec::new(["*.example.org", "b.example.org"], "10.0.0.1:443"),
                RouteSpec::new(["*.apps.example.org", "A.example.org"], "10.0.0.2:443"),
            ],
            ..ProxySpec::default()
        };
        let r = render(&spec).unwrap();
        let lines: Vec<&str> = r.wildcard_map.lines().skip(1).collect();
        assert_eq!(
            lines,
            vec![".apps.example.org be_route_1", ".example.org be_route_0"]
        );
        let lines: Vec<&str> = r.exact_map.lines().skip(1).collect();
        assert_eq!(
            lines,
            vec!["a.example.org be_route_1", "b.example.org be_route_0"]
        );
    }

    #[test]
    fn cfg_has_the_required_rules() {
        let mut spec = seed_layout("example.org");
        spec.routes[1].proxy_protocol = true;
        spec.routes[0].check = false;
        let r = render(&spec).unwrap();
        let cfg = &r.haproxy_cfg;
        for needle in [
            "defaults waddle_tcp\n    mode tcp\n",
            "tcp-request inspect-delay 5s",
            "tcp-request content reject unless { req.ssl_hello_type 1 }",
            "tcp-request content accept if { req.ssl_hello_type 1 }",
            "use_backend %[req.ssl_sni,lower,map(/etc/haproxy/maps/exact.map)] if { req.ssl_sni,lower,map(/etc/haproxy/maps/exact.map) -m found }",
            "use_backend %[req.ssl_sni,lower,map_end(/etc/haproxy/maps/wildcard.map)] if { req.ssl_sni,lower,map_end(/etc/haproxy/maps/wildcard.map) -m found }",
            "default_backend be_drop",
            "timeout tunnel 1h",
            "sni=%[capture.req.hdr(0)]",
            "server s0 10.10.0.2:3080\n",
            "server s0 10.10.0.30:443 check send-proxy-v2\n",
            "server http 10.10.0.30:80 check\n",
            "bind :443\n",
            "bind :80\n",
        ] {
            assert!(cfg.contains(needle), "missing {needle:?} in\n{cfg}");
        }
        // exact lookup precedes the wildcard lookup
        assert!(cfg.find("map(").unwrap() < cfg.find("map_end(").unwrap());
        // no deprecated fetch names
        assert!(!cfg.contains("req_ssl_sni") && !cfg.contains("req_ssl_hello_type"));
        // map_dom would match the bare suffix
        assert!(!cfg.contains("map_dom"));
    }

    #[test]
    fn output_is_deterministic_and_hash_tracks_every_file() {
        let spec = seed_layout("example.org");
        let a = render(&spec).unwrap();
        let b = render(&spec).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.config_hash.len(), 64);
        assert_eq!(
            a.config_hash,
            config_hash(&a.haproxy_cfg, &a.exact_map, &a.wildcard_map)
        );
        // moving content between files changes the hash
        let moved = config_hash(
            &a.haproxy_cfg,
            &format!("{}{}", a.exact_map, a.wildcard_map),
            "",
        );
        assert_ne!(moved, a.config_hash);
        // a route change changes the hash
        let mut spec2 = spec.clone();
        spec2.routes[1].backend = "10.10.0.31:443".into();
        assert_ne!(render(&spec2).unwrap().config_hash, a.config_hash);
    }

    #[test]
    fn versioned_maps_are_named_by_content() {
        let spec = seed_layout("example.org");
        let a = render_versioned(&spec).unwrap();
        let plain = render(&spec).unwrap();
        assert_eq!(a.exact_map, plain.exact_map);
        let digest = hex::encode(Sha256::digest(a.exact_map.as_bytes()));
        assert_eq!(
            a.paths.exact_map,
            format!("/etc/haproxy/maps/exact.{}.map", &digest[..12])
        );
        assert!(a
            .haproxy_cfg
            .contains(&format!("map({})", a.paths.exact_map)));
        assert!(a
            .haproxy_cfg
            .contains(&format!("map_end({})", a.paths.wildcard_map)));
        // a wildcard-only change renames only the wildcard map
        let mut spec2 = spec.clone();
        spec2.routes[1].hostnames.push("*.apps2.example.org".into());
        let b = render_versioned(&spec2).unwrap();
        assert_eq!(a.paths.exact_map, b.paths.exact_map);
        assert_ne!(a.paths.wildcard_map, b.paths.wildcard_map);
        assert_ne!(a.config_hash, b.config_hash);
        let script = update_script(
            &b,
            "/etc/haproxy/waddle-config.sha256",
            "systemctl reload haproxy",
        );
        assert!(script.contains("haproxy -c -f /etc/haproxy/haproxy.cfg.new"));
        assert!(script.contains("for f in /etc/haproxy/maps/wildcard.*.map;"));
        assert!(script.ends_with(&format!("echo {}\n", b.config_hash)));
        assert_eq!(split_ext("/a.b/c"), ("/a.b/c", ""));
        assert_eq!(split_ext("/x/exact.map"), ("/x/exact", ".map"));
    }

    #[test]
    fn live_map_paths_are_read_back_from_the_config() {
        let r = render_versioned(&seed_layout("example.org")).unwrap();
        assert_eq!(
            live_map_paths(&r.haproxy_cfg),
            Some((r.paths.exact_map.clone(), r.paths.wildcard_map.clone()))
        );
        assert_eq!(live_map_paths("global\n    maxconn 10\n"), None);
    }

    #[test]
    fn no_http_frontend_without_http_backend() {
        let mut spec = seed_layout("example.org");
        spec.http_backend = None;
        let cfg = render(&spec).unwrap().haproxy_cfg;
        assert!(!cfg.contains("ft_http") && !cfg.contains("be_http") && !cfg.contains(":80\n"));
        assert_eq!(cfg.matches("bind ").count(), 1);
    }

    #[test]
    fn no_log_lines_when_logging_disabled() {
        let mut spec = seed_layout("example.org");
        spec.log = LogTarget::Disabled;
        let cfg = render(&spec).unwrap().haproxy_cfg;
        assert!(!cfg.contains("log"), "{cfg}");
    }
}
