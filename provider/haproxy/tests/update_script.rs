//! The in-place update script, run with the real `haproxy -c` in a temp dir (reload replaced
//! by a marker command).

mod common;

use std::path::Path;
use std::process::Command;

use waddle_haproxy::{render_versioned, update_script, FilePaths, ProxySpec, RouteSpec};

fn spec_in(dir: &Path, extra: &str) -> ProxySpec {
    let mut spec = common::proxy_v2_spec();
    spec.routes.push(RouteSpec::new(
        [format!("*.{extra}.example.org")],
        "10.10.0.40:443",
    ));
    spec.paths = FilePaths::in_dir(dir);
    spec
}

fn run(script: &str, haproxy_dir: &Path) -> (bool, String) {
    // Make `haproxy` resolve to the real binary for the script.
    let bin = common::haproxy_bin();
    let bin_dir = Path::new(&bin).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("PATH", path)
        .current_dir(haproxy_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Writes a rendering the way the resource does: maps at their versioned paths, config and
/// marker as `.new`.
fn stage(r: &waddle_haproxy::Rendered, marker: &Path, cfg_override: Option<&str>) {
    std::fs::write(&r.paths.exact_map, &r.exact_map).unwrap();
    std::fs::write(&r.paths.wildcard_map, &r.wildcard_map).unwrap();
    std::fs::write(
        format!("{}.new", r.paths.config),
        cfg_override.unwrap_or(&r.haproxy_cfg),
    )
    .unwrap();
    std::fs::write(
        format!("{}.new", marker.display()),
        format!("{}\n", r.config_hash),
    )
    .unwrap();
}

#[test]
fn update_swaps_checked_config_and_keeps_old_one_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("waddle-config.sha256");
    let reloaded = dir.path().join("reloaded");
    let reload_cmd = format!("echo reload >> {}", reloaded.display());

    // first version
    let v1 = render_versioned(&spec_in(dir.path(), "one")).unwrap();
    stage(&v1, &marker, None);
    let (ok, out) = run(
        &update_script(&v1, &marker.to_string_lossy(), &reload_cmd),
        dir.path(),
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim().lines().last(), Some(v1.config_hash.as_str()));
    assert_eq!(
        std::fs::read_to_string(&v1.paths.config).unwrap(),
        v1.haproxy_cfg
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        v1.config_hash
    );

    // second version: new wildcard map beside the old one, old one removed after the swap
    let v2 = render_versioned(&spec_in(dir.path(), "two")).unwrap();
    assert_ne!(v1.paths.wildcard_map, v2.paths.wildcard_map);
    assert_eq!(v1.paths.exact_map, v2.paths.exact_map);
    stage(&v2, &marker, None);
    let (ok, out) = run(
        &update_script(&v2, &marker.to_string_lossy(), &reload_cmd),
        dir.path(),
    );
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(&v2.paths.config).unwrap(),
        v2.haproxy_cfg
    );
    assert!(Path::new(&v2.paths.wildcard_map).exists());
    assert!(
        !Path::new(&v1.paths.wildcard_map).exists(),
        "stale map kept"
    );
    assert!(Path::new(&v2.paths.exact_map).exists());
    assert_eq!(
        std::fs::read_to_string(&reloaded).unwrap(),
        "reload\nreload\n"
    );

    // third version fails the check: nothing changes, HAProxy's message is reported
    let v3 = render_versioned(&spec_in(dir.path(), "three")).unwrap();
    let broken = v3
        .haproxy_cfg
        .replace("mode tcp", "mode tcp\n    bogus-directive 1");
    stage(&v3, &marker, Some(&broken));
    let (ok, out) = run(
        &update_script(&v3, &marker.to_string_lossy(), &reload_cmd),
        dir.path(),
    );
    assert!(!ok, "broken config was applied: {out}");
    assert!(out.contains("bogus-directive"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&v2.paths.config).unwrap(),
        v2.haproxy_cfg
    );
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        v2.config_hash
    );
    assert!(!Path::new(&format!("{}.new", v3.paths.config)).exists());
    assert_eq!(
        std::fs::read_to_string(&reloaded).unwrap(),
        "reload\nreload\n"
    );
    assert!(Path::new(&v2.paths.wildcard_map).exists());
}
