//! Every rendered configuration passes the real `haproxy -c`, without warnings.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{check_in, haproxy_bin, many_routes, named_specs, render_into};
use waddle_haproxy::{haproxy_check, CheckError, LogTarget, ProcessSpec};

#[test]
fn snapshot_specs_pass_haproxy_check_without_warnings() {
    for (name, spec) in named_specs() {
        let dir = tempfile::tempdir().unwrap();
        let (r, out) = check_in(&spec, dir.path());
        assert!(
            out.warnings.is_empty(),
            "{name}: haproxy -c warned: {:?}\n{}",
            out.warnings,
            r.haproxy_cfg
        );
        // the maps really are loaded from the temp dir
        assert!(r.haproxy_cfg.contains(&r.paths.exact_map), "{name}");
    }
}

#[test]
fn test_profile_variants_pass_haproxy_check() {
    // What the data-path test runs: unprivileged, stdout logging, loopback listen address.
    for log in [LogTarget::Stdout, LogTarget::Disabled] {
        let mut spec = common::proxy_v2_spec();
        spec.process = ProcessSpec::unprivileged();
        spec.log = log.clone();
        spec.listen.address = Some("127.30.9.1".parse().unwrap());
        spec.listen.https_port = 18443;
        spec.listen.http_port = 18080;
        let dir = tempfile::tempdir().unwrap();
        let (r, out) = check_in(&spec, dir.path());
        assert!(out.warnings.is_empty(), "{log:?}: {:?}", out.warnings);
        assert!(r.haproxy_cfg.contains("bind 127.30.9.1:18443"));
    }
}

#[test]
fn thousand_routes_pass_haproxy_check() {
    let spec = many_routes(1000);
    let dir = tempfile::tempdir().unwrap();
    let (r, out) = check_in(&spec, dir.path());
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(r.exact_map.lines().count() - 1, 500);
    assert_eq!(r.wildcard_map.lines().count() - 1, 500);
    // lookup stays two map rules however many routes there are
    assert_eq!(r.haproxy_cfg.matches("use_backend").count(), 2);
}

#[test]
fn the_check_catches_a_broken_config() {
    // Proves the harness would notice a bad rendering: a map pointing at a missing backend
    // still loads, but a config referencing a missing map file is refused by HAProxy.
    let dir = tempfile::tempdir().unwrap();
    let r = render_into(&common::proxy_v2_spec(), dir.path());
    std::fs::remove_file(&r.paths.wildcard_map).unwrap();
    let err = haproxy_check(
        &haproxy_bin(),
        Path::new(&r.paths.config),
        Duration::from_secs(60),
    )
    .expect_err("missing map must fail the check");
    match err {
        CheckError::Invalid { output, .. } => {
            assert!(output.contains("wildcard.map"), "{output}")
        }
        other => panic!("unexpected {other:?}"),
    }
}
