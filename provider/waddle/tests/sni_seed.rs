//! The SNI proxy VM's NoCloud seed: the generic guest (`waddle_proxmox::cloud_config`) with
//! the HAProxy payload (`waddle_haproxy::payload`), checked by the real `cloud-init schema`.
//! (Moved from `waddle-haproxy`'s `tests/cloud_init.rs` when the generic seed moved out.)

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use waddle_haproxy::cloudinit::HASH_MARKER_PATH;
use waddle_haproxy::{render, seed_layout, ProxySpec, RouteSpec};
use waddle_provider::resources::sni_proxy::with_payload;
use waddle_proxmox::cloud_config::{render as render_seed, CloudConfig, GuestNic};

fn cloud_init_bin() -> String {
    if let Ok(p) = std::env::var("WADDLE_CLOUD_INIT") {
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]) {
        let c = d.join("cloud-init");
        if c.is_file() {
            return c.to_string_lossy().into_owned();
        }
    }
    panic!("cloud-init not found: run scripts/install-test-deps.sh (or set WADDLE_CLOUD_INIT)");
}

/// Runs `cloud-init schema --config-file <file>`; returns (success, output).
fn schema_check(content: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("user-data");
    std::fs::write(&f, content).unwrap();
    let out = Command::new(cloud_init_bin())
        .args(["schema", "--config-file"])
        .arg(&f)
        .output()
        .expect("cloud-init runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ci_spec() -> CloudConfig {
    CloudConfig {
        hostname: "sni-proxy".into(),
        instance_id: "waddle-sni-proxy-120".into(),
        admin_user: "waddle".into(),
        ssh_authorized_keys: vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2pZ1kJ9m3y4kq0Jq7b8qk2c1f4wQfE9m5Zq3a0b1c ops@waddle".into(),
        ],
        nics: vec![
            GuestNic {
                name: "ens18".into(),
                mac_address: Some("BC:24:11:00:00:01".into()),
                cidr: "203.0.113.10/24".into(),
                gateway: Some("203.0.113.1".parse().unwrap()),
            },
            GuestNic {
                name: "ens19".into(),
                mac_address: None,
                cidr: "10.10.0.10/24".into(),
                gateway: None,
            },
        ],
        dns_servers: vec!["1.1.1.1".parse().unwrap(), "9.9.9.9".parse().unwrap()],
        packages: Vec::new(),
        files: Vec::new(),
        commands: Vec::new(),
    }
}

/// The specs of `waddle-haproxy`'s tests: the seed layout, PROXY v2 with an IPv6 backend and
/// a Unicode name, and many routes.
fn named_specs() -> Vec<(&'static str, ProxySpec)> {
    let mut v2 = seed_layout("example.org");
    v2.routes[0].proxy_protocol = true;
    v2.routes[1].proxy_protocol = true;
    v2.routes.push(
        RouteSpec::new(
            ["Bücher.example.org", "*.v6.example.org"],
            "[fd00:10::5]:8443",
        )
        .with_check(false),
    );
    v2.maxconn = 10_000;
    v2.timeouts.tunnel = Duration::from_secs(8 * 3600);
    let mut many = seed_layout("example.org");
    many.routes = (0..25)
        .map(|i| {
            let host = if i % 2 == 0 {
                format!("svc{i}.example.org")
            } else {
                format!("*.tenant{i}.apps.example.org")
            };
            RouteSpec::new([host], &format!("10.10.1.{}:443", 1 + i))
        })
        .collect();
    vec![
        ("seed_layout", seed_layout("example.org")),
        ("proxy_v2", v2),
        ("many_routes", many),
    ]
}

#[test]
fn user_data_passes_cloud_init_schema_and_carries_the_files() {
    for (name, spec) in named_specs() {
        let r = render(&spec).unwrap();
        let ci = render_seed(&with_payload(ci_spec(), &r)).unwrap();
        assert!(ci.user_data.starts_with("#cloud-config\n"));
        let (ok, out) = schema_check(&ci.user_data);
        assert!(
            ok,
            "{name}: cloud-init schema refused:\n{out}\n{}",
            ci.user_data
        );
        assert!(out.contains("Valid cloud-config"), "{name}: {out}");

        // The YAML round-trips to the exact rendered files and the required settings.
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&ci.user_data).unwrap();
        assert_eq!(v["ssh_pwauth"], serde_yaml_ng::Value::Bool(false));
        assert_eq!(v["disable_root"], serde_yaml_ng::Value::Bool(true));
        let pkgs: Vec<&str> = v["packages"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(pkgs, ["haproxy", "qemu-guest-agent"]);
        let user = &v["users"][0];
        assert_eq!(user["name"].as_str(), Some("waddle"));
        assert_eq!(user["lock_passwd"], serde_yaml_ng::Value::Bool(true));
        assert_eq!(
            user["ssh_authorized_keys"][0].as_str(),
            Some(ci_spec().ssh_authorized_keys[0].as_str())
        );
        assert!(user["sudo"].as_str().unwrap().contains("NOPASSWD"));
        let files = v["write_files"].as_sequence().unwrap();
        let content_of = |p: &str| {
            files
                .iter()
                .find(|f| f["path"].as_str() == Some(p))
                .and_then(|f| f["content"].as_str())
                .unwrap_or_else(|| panic!("{p} not written"))
                .to_string()
        };
        assert_eq!(content_of("/etc/haproxy/haproxy.cfg"), r.haproxy_cfg);
        assert_eq!(content_of("/etc/haproxy/maps/exact.map"), r.exact_map);
        assert_eq!(content_of("/etc/haproxy/maps/wildcard.map"), r.wildcard_map);
        assert_eq!(content_of(HASH_MARKER_PATH).trim(), r.config_hash);
        // haproxy -c gates the enable/restart
        let runcmd = serde_yaml_ng::to_string(&v["runcmd"]).unwrap();
        let check = runcmd
            .find("haproxy -c -f /etc/haproxy/haproxy.cfg")
            .unwrap();
        let enable = runcmd.find("systemctl enable haproxy").unwrap();
        assert!(check < enable, "{runcmd}");
        assert!(runcmd.contains("qemu-guest-agent"));
    }
}

#[test]
fn seed_user_data_is_unchanged() {
    let r = render(&seed_layout("example.org")).unwrap();
    let ci = render_seed(&with_payload(ci_spec(), &r)).unwrap();
    insta::assert_snapshot!("seed_user_data", ci.user_data);
}
