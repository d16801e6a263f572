//! Placement, image, create, seed, start, refresh, import and delete of a VM resource's VM.

use std::collections::BTreeMap;

use waddle_proxmox::cloud_config::{CloudConfig, SeedFile};
use waddle_proxmox::{
    Client, ContentType, DiskSpec, DownloadUrl, NetSpec, OwnerMark, Params, VmConfig, VmSpec,
    WaitOptions,
};

use super::VmError;
use crate::resources::timeouts::Deadline;

/// Why an `image_url` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageUrlError {
    #[error("{url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error("{0:?} must be an http(s) URL")]
    Scheme(String),
    #[error("{0:?} has no file name")]
    NoFileName(String),
    #[error(
        "the file name {name:?} of {url:?} is not usable as `import` content: it must end in \
         .qcow2, .raw, .img or .vmdk and use letters, digits, `-`, `_`, `.`, `+`"
    )]
    FileName { name: String, url: String },
}

/// The file name `download-url` stores the image under: the URL's last path segment.
pub fn image_file_name(url: &str) -> Result<String, ImageUrlError> {
    let u = url::Url::parse(url).map_err(|e| ImageUrlError::NotAUrl {
        url: url.into(),
        reason: e.to_string(),
    })?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ImageUrlError::Scheme(url.into()));
    }
    let name = u
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ImageUrlError::NoFileName(url.into()))?
        .to_string();
    waddle_proxmox::validate_volume_file_name(ContentType::Import, &name).map_err(|_| {
        ImageUrlError::FileName {
            name: name.clone(),
            url: url.into(),
        }
    })?;
    Ok(name)
}

/// Why an import ID cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImportIdError {
    #[error("node: {0}")]
    Node(#[from] crate::provider::ValueError),
    #[error("{0:?}: expected <node>/<vmid> or <vmid>")]
    Shape(String),
    #[error("{0}")]
    Vmid(String),
}

/// Parse an import ID: `<node>/<vmid>` or `<vmid>`.
pub fn parse_import_id(id: &str) -> Result<(Option<String>, u32), ImportIdError> {
    let (node, vmid) = match id.trim().split_once('/') {
        Some((n, v)) => {
            crate::provider::validate_node(n)?;
            (Some(n.to_string()), v)
        }
        None => (None, id.trim()),
    };
    let vmid: u32 = vmid
        .parse()
        .map_err(|_| ImportIdError::Shape(id.to_string()))?;
    waddle_proxmox::props::validate_vmid(vmid).map_err(|e| ImportIdError::Vmid(e.to_string()))?;
    Ok((node, vmid))
}

/// Download `url` into `import` content of `storage` on `node` (once: skipped when the file
/// is already there). Returns the volume id and whether this call downloaded it.
pub async fn ensure_image(
    client: &Client,
    node: &str,
    storage: &str,
    url: &str,
    wait: &WaitOptions,
) -> Result<(String, bool), waddle_proxmox::Error> {
    let filename =
        image_file_name(url).map_err(|e| waddle_proxmox::Error::InvalidArgument(e.to_string()))?;
    let volid = waddle_proxmox::volume_id(storage, ContentType::Import, &filename);
    let there = client
        .list_storage_content(node, storage, Some(ContentType::Import.as_str()))
        .await?
        .iter()
        .any(|v| v.volid == volid);
    let dl = DownloadUrl {
        content: ContentType::Import,
        filename,
        url: url.to_string(),
        checksum: None,
        verify_certificates: None,
        compression: None,
    };
    let volid = client
        .ensure_image_downloaded(node, storage, &dl, wait)
        .await?;
    Ok((volid, !there))
}

/// What a VM is built from.
#[derive(Debug, Clone)]
pub struct VmBuild<'a> {
    pub name: &'a str,
    pub vmid: Option<u32>,
    pub cores: u32,
    pub memory: u64,
    pub storage: &'a str,
    pub disk_size: u32,
    /// Bridges of `net0`, `net1`, ... (virtio).
    pub bridges: Vec<&'a str>,
    pub tags: Vec<String>,
    pub description: String,
    pub mark: &'a OwnerMark,
}

/// Create the VM (stopped, `scsi0` imported from `image`, `onboot`). On failure the error
/// says whether the VM exists anyway (`created_vmid`).
pub async fn create(
    client: &Client,
    node: &str,
    b: &VmBuild<'_>,
    image: &str,
    wait: &WaitOptions,
) -> Result<u32, waddle_proxmox::Error> {
    let mut spec = VmSpec::new(b.name, b.cores, b.memory);
    spec.vmid = b.vmid;
    let mut disk = DiskSpec::import(0, b.storage, image);
    disk.size_gib = b.disk_size;
    spec.disks.push(disk);
    for (i, bridge) in b.bridges.iter().enumerate() {
        spec.nets.push(NetSpec::virtio(i as u8, bridge));
    }
    spec.boot_order = vec!["scsi0".into()];
    spec.tags = b.tags.clone();
    spec.description = Some(b.description.clone());
    b.mark.apply(&mut spec);
    // A VM waddle builds serves something: it comes back after a host reboot.
    spec.onboot = Some(true);
    client.create_vm_with(node, &spec, wait).await
}

/// The MACs Proxmox assigned to `net0`..`net{n-1}` (lower case).
pub async fn macs(
    client: &Client,
    node: &str,
    vmid: u32,
    n: u8,
) -> Result<Vec<Option<String>>, VmError> {
    let cfg = client
        .vm_config(node, vmid)
        .await
        .map_err(VmError::api("reading the VM config"))?;
    Ok((0..n)
        .map(|i| {
            cfg.net(i)
                .and_then(|x| x.mac)
                .map(|m| m.to_ascii_lowercase())
        })
        .collect())
}

/// A payload's file in the seed, written after the packages are installed (a package's own
/// conffile never overwrites it, and it may belong to a group the package creates).
pub fn payload_file(path: String, content: String, owner: &str, permissions: &str) -> SeedFile {
    SeedFile {
        path,
        content,
        owner: owner.into(),
        permissions: permissions.into(),
        defer: true,
    }
}

/// `ci` with a payload's packages, files and commands added.
pub fn with_payload(
    mut ci: CloudConfig,
    packages: Vec<String>,
    files: impl IntoIterator<Item = SeedFile>,
    commands: Vec<Vec<String>>,
) -> CloudConfig {
    ci.packages.extend(packages);
    ci.files.extend(files);
    ci.commands.extend(commands);
    ci
}

/// The NoCloud seed ISO of a cloud config.
pub fn seed_iso(ci: &CloudConfig) -> Result<Vec<u8>, VmError> {
    waddle_proxmox::cloud_config::render(ci)?
        .build_iso(None)
        .map_err(VmError::api("building the seed ISO"))
}

/// The volume id of seed ISO `name` on `image_storage`.
pub fn seed_volid(image_storage: &str, name: &str) -> String {
    waddle_proxmox::volume_id(image_storage, ContentType::Iso, name)
}

/// Upload the seed ISO, attach it as `ide2` and start the VM.
pub async fn seed_and_start(
    client: &Client,
    node: &str,
    vmid: u32,
    image_storage: &str,
    name: &str,
    iso: Vec<u8>,
) -> Result<(), VmError> {
    client
        .upload_iso(node, image_storage, name, iso, true)
        .await
        .map_err(VmError::api("uploading the seed ISO"))?;
    client
        .update_vm_config(
            node,
            vmid,
            &Params::new().str(
                "ide2",
                format!("{},media=cdrom", seed_volid(image_storage, name)),
            ),
        )
        .await
        .map_err(VmError::api("attaching the seed ISO"))?;
    client
        .start_vm(node, vmid)
        .await
        .map_err(VmError::api("starting the VM"))
}

/// Make an existing (e.g. imported) VM ours and running: mark it, `onboot`, and start it
/// when stopped (then wait for its guest agent).
pub async fn ensure_running(
    client: &Client,
    node: &str,
    vmid: u32,
    mark: &OwnerMark,
    deadline: &Deadline,
    cancel: &waddle_proxmox::CancellationToken,
) -> Result<(), VmError> {
    client
        .mark_vm(node, vmid, mark)
        .await
        .map_err(VmError::api("marking the VM as this resource's"))?;
    let cfg = client
        .vm_config(node, vmid)
        .await
        .map_err(VmError::api("reading the VM config"))?;
    if cfg.get_str("onboot").as_deref() != Some("1") {
        client
            .update_vm_config(node, vmid, &Params::new().bool("onboot", true))
            .await
            .map_err(VmError::api("setting onboot"))?;
    }
    let status = client
        .vm_status(node, vmid)
        .await
        .map_err(VmError::api("reading the VM status"))?;
    if !status.is_running() {
        client
            .start_vm(node, vmid)
            .await
            .map_err(VmError::api("starting the VM"))?;
        client
            .wait_agent(node, vmid, deadline.remaining(), Some(cancel))
            .await
            .map_err(VmError::api(format!(
                "waiting for the guest agent (deadline {deadline})"
            )))?;
    }
    Ok(())
}

/// What the VM config says about the shared attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmFacts {
    pub name: Option<String>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    /// Bridge of each `netN`.
    pub bridges: BTreeMap<u8, String>,
    /// Storage of `scsi0`.
    pub storage: Option<String>,
    /// Size of `scsi0` in GiB (rounded up).
    pub disk_size: Option<u32>,
    /// The ISO attached as `ide2`, and its storage.
    pub seed_iso: Option<(String, String)>,
}

impl VmFacts {
    pub fn of(cfg: &VmConfig) -> Self {
        let mut f = VmFacts {
            name: cfg.get_str("name"),
            cores: cfg.get_str("cores").and_then(|c| c.parse().ok()),
            memory: cfg.get_str("memory").and_then(|m| m.parse().ok()),
            bridges: cfg
                .nets()
                .into_iter()
                .filter_map(|(i, n)| n.bridge.map(|b| (i, b)))
                .collect(),
            ..Default::default()
        };
        if let Some(disk) = cfg.get_str("scsi0") {
            for (k, v) in waddle_proxmox::props::parse_property_string(&disk, Some("file")) {
                match k.as_str() {
                    "file" => {
                        if let Some((s, _)) = v.split_once(':') {
                            f.storage = Some(s.to_string());
                        }
                    }
                    "size" => {
                        if let Some(b) = waddle_proxmox::props::parse_disk_size(&v) {
                            f.disk_size = Some(b.div_ceil(1 << 30) as u32);
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(cd) = cfg.get_str("ide2") {
            let vol = cd.split(',').next().unwrap_or_default().to_string();
            if vol.contains(":iso/") {
                if let Some((s, _)) = vol.split_once(':') {
                    f.seed_iso = Some((vol.clone(), s.to_string()));
                }
            }
        }
        f
    }
}
