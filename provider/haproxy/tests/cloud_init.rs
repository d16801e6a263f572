//! Cloud-init seed rendering, checked by the real `cloud-init schema`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use waddle_haproxy::cloudinit::HASH_MARKER_PATH;
use waddle_haproxy::{
    render, render_cloud_init, seed_layout, validate_cloud_init, CloudInitSpec, NicSpec,
    RenderError,
};

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

fn ci_spec() -> CloudInitSpec {
    CloudInitSpec {
        hostname: "sni-proxy".into(),
        instance_id: "waddle-sni-proxy-120".into(),
        admin_user: "waddle".into(),
        ssh_authorized_keys: vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk2pZ1kJ9m3y4kq0Jq7b8qk2c1f4wQfE9m5Zq3a0b1c ops@waddle".into(),
        ],
        public_nic: NicSpec {
            name: "ens18".into(),
            mac_address: Some("BC:24:11:00:00:01".into()),
            cidr: "203.0.113.10/24".into(),
            gateway: Some("203.0.113.1".parse().unwrap()),
        },
        private_nic: NicSpec {
            name: "ens19".into(),
            mac_address: None,
            cidr: "10.10.0.10/24".into(),
            gateway: None,
        },
        dns_servers: vec!["1.1.1.1".parse().unwrap(), "9.9.9.9".parse().unwrap()],
    }
}

#[test]
fn user_data_passes_cloud_init_schema_and_carries_the_files() {
    for (name, spec) in common::named_specs() {
        let r = render(&spec).unwrap();
        let ci = render_cloud_init(&ci_spec(), &r).unwrap();
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
fn the_schema_check_rejects_invalid_user_data() {
    // Proves the harness: a type error in a known key must be refused.
    let (ok, out) = schema_check("#cloud-config\nssh_pwauth: false\npackages: 5\nruncmd: {a: 1}\n");
    assert!(!ok, "cloud-init schema accepted invalid data: {out}");
}

#[test]
fn meta_data_and_network_config() {
    let r = render(&seed_layout("example.org")).unwrap();
    let ci = render_cloud_init(&ci_spec(), &r).unwrap();
    let md: serde_yaml_ng::Value = serde_yaml_ng::from_str(&ci.meta_data).unwrap();
    assert_eq!(md["instance-id"].as_str(), Some("waddle-sni-proxy-120"));
    assert_eq!(md["local-hostname"].as_str(), Some("sni-proxy"));

    let nc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&ci.network_config).unwrap();
    assert_eq!(nc["version"].as_u64(), Some(2));
    let public = &nc["ethernets"]["ens18"];
    assert_eq!(
        public["match"]["macaddress"].as_str(),
        Some("bc:24:11:00:00:01")
    );
    assert_eq!(public["set-name"].as_str(), Some("ens18"));
    assert_eq!(public["addresses"][0].as_str(), Some("203.0.113.10/24"));
    assert_eq!(public["routes"][0]["to"].as_str(), Some("0.0.0.0/0"));
    assert_eq!(public["routes"][0]["via"].as_str(), Some("203.0.113.1"));
    assert_eq!(
        public["nameservers"]["addresses"][1].as_str(),
        Some("9.9.9.9")
    );
    let private = &nc["ethernets"]["ens19"];
    assert_eq!(private["addresses"][0].as_str(), Some("10.10.0.10/24"));
    assert!(private.get("routes").is_none() && private.get("match").is_none());
    insta::assert_snapshot!("seed_user_data", ci.user_data);
    insta::assert_snapshot!("seed_network_config", ci.network_config);
}

#[test]
fn bad_cloud_init_inputs_are_reported_with_paths() {
    let mut s = ci_spec();
    s.admin_user = "root".into();
    s.ssh_authorized_keys = vec!["not a key".into()];
    s.public_nic.cidr = "203.0.113.10".into();
    s.public_nic.gateway = Some("fd00::1".parse().unwrap());
    s.private_nic.mac_address = Some("zz:zz".into());
    s.private_nic.cidr = "10.10.0.10/33".into();
    s.hostname = "bad_host".into();
    let err = validate_cloud_init(&s).unwrap_err();
    let paths: Vec<String> = err.errors().iter().map(|e| e.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "hostname",
            "admin_user",
            "ssh_authorized_keys[0]",
            "public_nic.cidr",
            "private_nic.mac_address",
            "private_nic.cidr"
        ]
    );
    let r = render(&seed_layout("example.org")).unwrap();
    assert!(matches!(
        render_cloud_init(&s, &r),
        Err(RenderError::Invalid(_))
    ));
    // a gateway of the wrong family is caught once the CIDR parses
    let mut s = ci_spec();
    s.public_nic.gateway = Some("fd00::1".parse().unwrap());
    let err = validate_cloud_init(&s).unwrap_err();
    assert_eq!(err.errors()[0].path.to_string(), "public_nic.gateway");
}
