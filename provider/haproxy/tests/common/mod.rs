//! Shared helpers of the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use waddle_haproxy::{
    haproxy_check, render, seed_layout, CheckOutput, FilePaths, ProxySpec, Rendered, RouteSpec,
};

/// The HAProxy binary: `WADDLE_HAPROXY` or `haproxy` on PATH (plus /usr/sbin, where Debian
/// puts it). Panics when missing: these tests must not silently pass without HAProxy
/// (`scripts/install-test-deps.sh` installs it).
pub fn haproxy_bin() -> String {
    if let Ok(p) = std::env::var("WADDLE_HAPROXY") {
        return p;
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/local/sbin".into());
    for d in dirs {
        let c = d.join("haproxy");
        if c.is_file() {
            return c.to_string_lossy().into_owned();
        }
    }
    panic!("haproxy not found: run scripts/install-test-deps.sh (or set WADDLE_HAPROXY)");
}

/// The specs that are snapshotted and checked with `haproxy -c`.
pub fn named_specs() -> Vec<(&'static str, ProxySpec)> {
    vec![
        ("seed_layout", seed_layout("example.org")),
        ("proxy_v2", proxy_v2_spec()),
        ("many_routes", many_routes(25)),
    ]
}

/// Seed layout with PROXY v2 towards Teleport and the gateway, one route without checks, an
/// IPv6 backend, a Unicode name and custom timeouts.
pub fn proxy_v2_spec() -> ProxySpec {
    let mut spec = seed_layout("example.org");
    spec.routes[0].proxy_protocol = true;
    spec.routes[1].proxy_protocol = true;
    spec.routes.push(
        RouteSpec::new(
            ["Bücher.example.org", "*.v6.example.org"],
            "[fd00:10::5]:8443",
        )
        .with_check(false),
    );
    spec.maxconn = 10_000;
    spec.timeouts.tunnel = Duration::from_secs(8 * 3600);
    spec.timeouts.connect = Duration::from_millis(2500);
    spec
}

/// `n` routes, alternating exact names and wildcards, on distinct private backends.
pub fn many_routes(n: usize) -> ProxySpec {
    let routes = (0..n)
        .map(|i| {
            let host = if i % 2 == 0 {
                format!("svc{i}.example.org")
            } else {
                format!("*.tenant{i}.apps.example.org")
            };
            let ip = format!("10.10.{}.{}", 1 + i / 250, 1 + i % 250);
            RouteSpec::new([host], &format!("{ip}:443")).with_proxy_protocol(i % 3 == 0)
        })
        .collect();
    ProxySpec {
        routes,
        http_backend: Some("10.10.0.30:80".into()),
        ..ProxySpec::default()
    }
}

/// Renders `spec` with its files placed in `dir`, writes them and returns the rendering.
pub fn render_into(spec: &ProxySpec, dir: &Path) -> Rendered {
    let mut spec = spec.clone();
    spec.paths = FilePaths::in_dir(dir);
    let r = render(&spec).expect("spec renders");
    r.write_files().expect("files written");
    r
}

/// Renders into `dir` and runs the real `haproxy -c`, panicking with HAProxy's output on
/// failure.
pub fn check_in(spec: &ProxySpec, dir: &Path) -> (Rendered, CheckOutput) {
    let r = render_into(spec, dir);
    let out = haproxy_check(
        &haproxy_bin(),
        Path::new(&r.paths.config),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("haproxy -c refused the config: {e}\n{}", r.haproxy_cfg));
    (r, out)
}
