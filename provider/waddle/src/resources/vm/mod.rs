//! The shared lifecycle of a waddle guest VM: a Debian cloud image on Proxmox VE with a
//! NoCloud seed, configured through the QEMU guest agent. A VM-backed resource (e.g.
//! `waddle_sni_proxy`) adds only its payload:
//!
//! * [`schema`]: the attribute fragment (`name`, `node`, `vmid`, `storage`, `cores`,
//!   `memory`, `disk_size`, `image_url`, `image_storage`, `dns_servers`, `admin_user`,
//!   `ssh_authorized_keys`) with its declarative validators, and the resource's NIC layout.
//! * [`validate`]: the cloud-init inputs checked with `waddle_proxmox::cloud_config`
//!   (unknown values skipped), errors mapped to the resource's attribute paths.
//! * [`plan`]: `node` from the provider configuration, `id` from node and vmid, addresses
//!   from the NICs' CIDRs, replacement only for attributes a prior state had.
//! * [`lifecycle`]: placement and VMID, the image downloaded once per storage, create,
//!   seed ISO upload, start, refresh from the VM config, import IDs, delete through
//!   `Client::shutdown_and_delete_vm`.
//! * [`owned`]: what a VM resource owns in Proxmox and how it finds it again (the ownership
//!   mark, the seed ISO named after the VMID; see the crash-consistency rules there).
//!
//! * [`guest`]: the steps every payload takes on the guest (a command that must succeed,
//!   files, a staged file checked before it replaces the live one, cloud-init's status, the
//!   poll until the guest is ready), through `waddle_proxmox::Guest`.
//! * [`resource`]: [`VmResource`], the hooks a payload implements, and its adapter [`Vm`].

pub mod guest;
pub mod lifecycle;
pub mod ops;
pub mod owned;
pub mod plan;
pub mod resource;
pub mod schema;
pub mod validate;

pub use resource::{Vm, VmResource};

/// Why a step of a VM's lifecycle failed: the step and the API error.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<waddle_proxmox::Error>,
    },
    #[error("rendering cloud-init: {0}")]
    Seed(#[from] waddle_proxmox::cloud_config::SeedError),
    #[error("{0}")]
    Refused(String),
}

impl VmError {
    /// A failed API call of step `what`.
    pub fn api(what: impl Into<String>) -> impl FnOnce(waddle_proxmox::Error) -> VmError {
        let what = what.into();
        move |source| VmError::Api {
            what,
            source: Box::new(source),
        }
    }
}

/// The default `image_url` of every VM resource: Debian 12 (bookworm) generic cloud image.
pub const DEFAULT_IMAGE_URL: &str =
    "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2";

/// The defaults of a VM resource's shared attributes (they appear in its documentation).
/// A resource sets its name and size and takes the rest from [`VmDefaults::DEBIAN`].
#[derive(Debug, Clone, Copy)]
pub struct VmDefaults {
    pub name: &'static str,
    pub storage: &'static str,
    pub image_storage: &'static str,
    pub image_url: &'static str,
    pub cores: i64,
    pub memory: i64,
    pub disk_size: i64,
    pub admin_user: &'static str,
    pub dns: [&'static str; 2],
}

impl VmDefaults {
    /// The Debian 12 cloud image on PVE's default storages, admin user `waddle`, public
    /// resolvers; 1 core, 512 MiB, 8 GiB.
    pub const DEBIAN: VmDefaults = VmDefaults {
        name: "debian",
        storage: "local-lvm",
        image_storage: "local",
        image_url: DEFAULT_IMAGE_URL,
        cores: 1,
        memory: 512,
        disk_size: 8,
        admin_user: "waddle",
        dns: ["1.1.1.1", "9.9.9.9"],
    };
}

/// One NIC of a VM resource: its attribute (`public_nic`), whether it has a `gateway`, and
/// the guest's interface name (Debian names virtio `net0` `ens18`, `net1` `ens19`, ...).
#[derive(Debug, Clone, Copy)]
pub struct NicLayout {
    pub attr: &'static str,
    /// The computed attribute with the NIC's address (`public_address`).
    pub address: &'static str,
    pub iface: &'static str,
    pub has_gateway: bool,
}

/// `<node>/<vmid>`.
pub fn id_of(node: &str, vmid: u32) -> String {
    format!("{node}/{vmid}")
}
