//! The HAProxy payload of the proxy VM's NoCloud seed: the package, the files and the boot
//! command. The generic seed (hostname, admin user and keys, NICs, DNS, guest agent) is
//! `waddle_proxmox::cloud_config`; the provider puts the two together.
//!
//! The files (rendered config, both maps and a hash marker) are deferred until after package
//! installation, so the package's own conffile never overwrites ours and the files can belong
//! to the `haproxy` group. The command runs `haproxy -c` and only then enables and restarts
//! HAProxy (on a failed check HAProxy is left stopped and disabled and the boot script exits
//! non-zero).

use crate::render::Rendered;

/// Where the config hash marker is written on the VM (one line: the `config_hash`). The
/// resource's read compares the hash of the live files with it.
pub const HASH_MARKER_PATH: &str = "/etc/haproxy/waddle-config.sha256";

/// One file of the payload (owner `root:haproxy`, written after the packages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    pub path: String,
    pub content: String,
    pub owner: &'static str,
    pub permissions: &'static str,
}

/// What the seed must add for HAProxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub packages: Vec<String>,
    pub files: Vec<PayloadFile>,
    pub commands: Vec<Vec<String>>,
}

/// The boot-time check-then-enable script run by `runcmd`.
pub fn enable_script(config_path: &str) -> String {
    format!(
        "if haproxy -c -f {config_path}; then systemctl enable haproxy && systemctl restart haproxy; \
         else systemctl disable --now haproxy; echo 'waddle: haproxy -c failed, haproxy left stopped' >&2; exit 1; fi"
    )
}

/// The payload for a VM serving `rendered`.
pub fn payload(rendered: &Rendered) -> Payload {
    let mut files: Vec<PayloadFile> = rendered
        .files()
        .into_iter()
        .map(|f| PayloadFile {
            path: f.path,
            content: f.content,
            owner: "root:haproxy",
            permissions: f.permissions,
        })
        .collect();
    files.push(PayloadFile {
        path: HASH_MARKER_PATH.to_string(),
        content: format!("{}\n", rendered.config_hash),
        owner: "root:haproxy",
        permissions: "0644",
    });
    Payload {
        packages: vec!["haproxy".into()],
        files,
        commands: vec![vec![
            "sh".into(),
            "-c".into(),
            enable_script(&rendered.paths.config),
        ]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_gates_the_enable_and_the_marker_carries_the_hash() {
        let r = crate::render(&crate::seed_layout("example.org")).unwrap();
        let p = payload(&r);
        assert_eq!(p.packages, ["haproxy"]);
        let content_of = |path: &str| {
            p.files
                .iter()
                .find(|f| f.path == path)
                .map(|f| f.content.clone())
                .unwrap_or_else(|| panic!("{path} not written"))
        };
        assert_eq!(content_of("/etc/haproxy/haproxy.cfg"), r.haproxy_cfg);
        assert_eq!(content_of("/etc/haproxy/maps/exact.map"), r.exact_map);
        assert_eq!(content_of("/etc/haproxy/maps/wildcard.map"), r.wildcard_map);
        assert_eq!(content_of(HASH_MARKER_PATH).trim(), r.config_hash);
        assert!(p.files.iter().all(|f| f.owner == "root:haproxy"));
        let script = &p.commands[0][2];
        let check = script
            .find("haproxy -c -f /etc/haproxy/haproxy.cfg")
            .unwrap();
        let enable = script.find("systemctl enable haproxy").unwrap();
        assert!(check < enable, "{script}");
    }
}
