//! The Teleport payload of the node's NoCloud seed (packages, non-secret files, boot
//! commands) and the scripts the provider runs through the guest agent later. The generic
//! seed (hostname, admin user, NIC, DNS, guest agent) is `waddle_proxmox::cloud_config`; the
//! provider joins the two.
//!
//! Teleport Community comes from Teleport's official apt repository
//! (`https://apt.releases.teleport.dev/debian`, channel `stable/v<major>`, key
//! `https://apt.releases.teleport.dev/gpg`) at the pinned version. **No secret is in the
//! seed**: the GitHub client secret and the kubeconfig arrive later through the guest agent.
//! With the Kubernetes service on, the boot command leaves Teleport stopped until the
//! kubeconfig is there (the provider writes it, then starts Teleport).

use crate::render::Rendered;
use crate::spec::{Version, CONFIG_PATH, KUBECONFIG_PATH};

/// The apt source list of the Teleport repository.
pub const APT_LIST_PATH: &str = "/etc/apt/sources.list.d/teleport.list";
/// The repository's signing key on the VM.
pub const KEYRING_PATH: &str = "/usr/share/keyrings/teleport-archive-keyring.asc";
/// Where the key is published.
pub const KEY_URL: &str = "https://apt.releases.teleport.dev/gpg";
/// The repository.
pub const REPO_URL: &str = "https://apt.releases.teleport.dev/debian";
/// Debian 12.
pub const DEBIAN_CODENAME: &str = "bookworm";
/// The root-only connector document (carries the client secret).
pub const CONNECTOR_PATH: &str = "/etc/teleport/waddle-github.yaml";
/// The role documents.
pub const ROLES_PATH: &str = "/etc/teleport/waddle-roles.yaml";
/// The names of the roles waddle created (one a line), so a removed one is deleted.
pub const ROLES_LIST_PATH: &str = "/etc/teleport/waddle-roles.list";
/// The hash marker of the last applied configuration.
pub const HASH_MARKER_PATH: &str = "/etc/teleport/waddle-config.sha256";

/// One file of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadFile {
    pub path: String,
    pub content: String,
    pub owner: &'static str,
    pub permissions: &'static str,
}

/// What the seed adds for Teleport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub packages: Vec<String>,
    pub files: Vec<PayloadFile>,
    pub commands: Vec<Vec<String>>,
}

/// The apt source line of `version`'s major channel.
pub fn apt_source(version: &Version) -> String {
    format!(
        "deb [signed-by={KEYRING_PATH}] {REPO_URL} {DEBIAN_CODENAME} stable/v{}\n",
        version.major
    )
}

/// Install (or move to) `version` from the repository: refresh the key, the index, then the
/// pinned package (`--allow-downgrades` so a pin to an older patch is honoured).
pub fn install_script(version: &str) -> String {
    format!(
        "curl -fsSL {KEY_URL} -o {KEYRING_PATH} && apt-get update && \
         apt-get install -y --allow-downgrades teleport={version}"
    )
}

/// The payload of a rendered node. `kubernetes`: Teleport waits for the kubeconfig.
pub fn payload(r: &Rendered, kubernetes: bool) -> Payload {
    let version = Version::parse(&r.version).unwrap_or(Version {
        major: 18,
        minor: 0,
        patch: 0,
    });
    let install = format!(
        "{} && install -d -m 0700 /etc/teleport && systemctl enable teleport",
        install_script(&r.version)
    );
    // Without the kubeconfig Teleport's Kubernetes service would stop it at start: the
    // provider starts it once the file is there.
    let start = if kubernetes {
        format!("test -e {KUBECONFIG_PATH} && systemctl restart teleport || true")
    } else {
        "systemctl restart teleport".to_string()
    };
    Payload {
        packages: vec!["curl".into(), "ca-certificates".into()],
        files: vec![
            PayloadFile {
                path: APT_LIST_PATH.into(),
                content: apt_source(&version),
                owner: "root:root",
                permissions: "0644",
            },
            PayloadFile {
                path: CONFIG_PATH.into(),
                content: r.teleport_yaml.clone(),
                owner: "root:root",
                permissions: "0600",
            },
        ],
        commands: vec![
            vec!["sh".into(), "-c".into(), install],
            vec!["sh".into(), "-c".into(), start],
        ],
    }
}
