//! The NoCloud seed of a guest VM, checked by the real `cloud-init schema`.

use std::path::PathBuf;
use std::process::Command;

use waddle_proxmox::cloud_config::{render, validate, CloudConfig, GuestNic, SeedError, SeedFile};

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
        packages: vec!["nginx".into()],
        files: vec![SeedFile {
            path: "/etc/app.conf".into(),
            content: "a = 1\n".into(),
            owner: "root:root".into(),
            permissions: "0644".into(),
            defer: true,
        }],
        commands: vec![vec!["systemctl".into(), "restart".into(), "nginx".into()]],
    }
}

#[test]
fn user_data_passes_cloud_init_schema_and_carries_the_payload() {
    let seed = render(&ci_spec()).unwrap();
    assert!(seed.user_data.starts_with("#cloud-config\n"));
    let (ok, out) = schema_check(&seed.user_data);
    assert!(ok, "cloud-init schema refused:\n{out}\n{}", seed.user_data);
    assert!(out.contains("Valid cloud-config"), "{out}");

    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&seed.user_data).unwrap();
    assert_eq!(v["ssh_pwauth"], serde_yaml_ng::Value::Bool(false));
    assert_eq!(v["disable_root"], serde_yaml_ng::Value::Bool(true));
    let pkgs: Vec<&str> = v["packages"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(pkgs, ["nginx", "qemu-guest-agent"]);
    let user = &v["users"][0];
    assert_eq!(user["name"].as_str(), Some("waddle"));
    assert_eq!(user["lock_passwd"], serde_yaml_ng::Value::Bool(true));
    assert_eq!(
        user["ssh_authorized_keys"][0].as_str(),
        Some(ci_spec().ssh_authorized_keys[0].as_str())
    );
    assert!(user["sudo"].as_str().unwrap().contains("NOPASSWD"));
    assert_eq!(v["write_files"][0]["content"].as_str(), Some("a = 1\n"));
    assert_eq!(
        v["write_files"][0]["defer"],
        serde_yaml_ng::Value::Bool(true)
    );
    // The guest agent starts before the payload's commands.
    let runcmd = serde_yaml_ng::to_string(&v["runcmd"]).unwrap();
    let agent = runcmd.find("qemu-guest-agent").unwrap();
    let payload = runcmd.find("nginx").unwrap();
    assert!(agent < payload, "{runcmd}");
}

#[test]
fn the_schema_check_rejects_invalid_user_data() {
    // Proves the harness: a type error in a known key must be refused.
    let (ok, out) = schema_check("#cloud-config\nssh_pwauth: false\npackages: 5\nruncmd: {a: 1}\n");
    assert!(!ok, "cloud-init schema accepted invalid data: {out}");
}

#[test]
fn meta_data_and_network_config() {
    let mut spec = ci_spec();
    spec.packages.clear();
    let seed = render(&spec).unwrap();
    let md: serde_yaml_ng::Value = serde_yaml_ng::from_str(&seed.meta_data).unwrap();
    assert_eq!(md["instance-id"].as_str(), Some("waddle-sni-proxy-120"));
    assert_eq!(md["local-hostname"].as_str(), Some("sni-proxy"));

    let network_config = seed.network_config.unwrap();
    let nc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&network_config).unwrap();
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
    insta::assert_snapshot!("seed_network_config", network_config);
}

#[test]
fn any_number_of_nics() {
    let mut spec = ci_spec();
    for i in 0..3u8 {
        spec.nics.push(GuestNic {
            name: format!("ens{}", 20 + i),
            mac_address: Some(format!("bc:24:11:00:01:0{i}")),
            cidr: format!("10.{i}.0.5/24"),
            gateway: None,
        });
    }
    let nc = render(&spec).unwrap().network_config.unwrap();
    let nc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&nc).unwrap();
    assert_eq!(nc["ethernets"].as_mapping().unwrap().len(), 5);
    assert_eq!(
        nc["ethernets"]["ens22"]["addresses"][0].as_str(),
        Some("10.2.0.5/24")
    );
    assert!(nc["ethernets"]["ens22"].get("nameservers").is_none());
}

#[test]
fn bad_cloud_init_inputs_are_reported_with_paths() {
    let mut s = ci_spec();
    s.admin_user = "root".into();
    s.ssh_authorized_keys = vec!["not a key".into()];
    s.nics[0].cidr = "203.0.113.10".into();
    s.nics[0].gateway = Some("fd00::1".parse().unwrap());
    s.nics[1].mac_address = Some("zz:zz".into());
    s.nics[1].cidr = "10.10.0.10/33".into();
    s.hostname = "bad_host".into();
    let err = validate(&s).unwrap_err();
    let paths: Vec<String> = err.errors().iter().map(|e| e.path.to_string()).collect();
    assert_eq!(
        paths,
        [
            "hostname",
            "admin_user",
            "ssh_authorized_keys[0]",
            "nics[0].cidr",
            "nics[1].mac_address",
            "nics[1].cidr"
        ]
    );
    assert!(matches!(render(&s), Err(SeedError::Invalid(_))));
    // a gateway of the wrong family is caught once the CIDR parses
    let mut s = ci_spec();
    s.nics[0].gateway = Some("fd00::1".parse().unwrap());
    let err = validate(&s).unwrap_err();
    assert_eq!(err.errors()[0].path.to_string(), "nics[0].gateway");
    // two NICs of the same name
    let mut s = ci_spec();
    s.nics[1].name = "ens18".into();
    let err = validate(&s).unwrap_err();
    assert_eq!(err.errors()[0].path.to_string(), "nics[1].name");
}

#[test]
fn nic_cidrs_are_read_strictly_with_one_message() {
    let with_cidr = |cidr: &str| {
        let mut s = ci_spec();
        s.nics[1].cidr = cidr.into();
        validate(&s)
    };
    // Accepted: a host address with a decimal prefix (leading zeros are digits).
    let accepted = [
        "10.10.0.10/24",
        "10.10.0.10/024",
        "10.10.0.0/0",
        "fd00::10/64",
    ];
    let wrongly_refused: Vec<&str> = accepted
        .into_iter()
        .filter(|c| with_cidr(c).is_err())
        .collect();
    assert_eq!(wrongly_refused, Vec::<&str>::new());
    let refused = [
        "10.10.0.10/+8",
        "10.10.0.10/-8",
        "10.10.0.10/",
        "10.10.0.10/ 8",
        "10.10.0.10/33",
        "fd00::10/129",
        "10.10.0.300/24",
        "10.10.0.10",
    ];
    for bad in refused {
        let err = with_cidr(bad).unwrap_err();
        let e = &err.errors()[0];
        assert_eq!(
            (e.path.to_string(), e.message.clone()),
            (
                "nics[1].cidr".to_string(),
                format!("`{bad}` is not an address in CIDR notation")
            ),
            "{bad}"
        );
    }
}
