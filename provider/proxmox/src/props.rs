//! PVE property strings (`key=value,...`), validators for PVE identifiers, and the typed
//! device specs that render to property strings.

use crate::error::{Error, Result};

/// Parse a property string (`virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1`). A part
/// without `=` is the value of `default_key` (e.g. `file` for disks, `model` for NICs).
/// Returns (key, value) pairs in order.
pub fn parse_property_string(s: &str, default_key: Option<&str>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
            None => out.push((default_key.unwrap_or("").to_string(), part.to_string())),
        }
    }
    out
}

fn invalid(field: &str, value: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("{field}: {value:?} {why}"))
}

/// A VMID must be 100..=999999999.
pub fn validate_vmid(vmid: u32) -> Result<()> {
    if (100..=999_999_999).contains(&vmid) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "vmid: {vmid} must be between 100 and 999999999"
        )))
    }
}

/// A PVE node name (`pve-node`): letters, digits and inner hyphens, at most 63 chars.
pub fn validate_node(node: &str) -> Result<()> {
    let b = node.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(invalid("node", node, "is not a valid Proxmox node name"))
    }
}

/// A storage id (`pve-storage-id`): `[a-z][a-z0-9\-_.]*[a-z0-9]`.
pub fn validate_storage(id: &str) -> Result<()> {
    let b = id.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(c))
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(invalid("storage", id, "is not a valid storage id"))
    }
}

/// A network interface / bridge name (`pve-iface`-like): starts with a letter, then
/// letters, digits, `_`, `-` or `.`, 2..=15 characters (Linux IFNAMSIZ).
pub fn validate_bridge(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = (2..=15).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid("bridge", name, "is not a valid interface name"))
    }
}

/// Validate a MAC address (six `XX` groups separated by `:`) that PVE accepts for a NIC
/// (unicast: the low bit of the first octet clear). Returns it upper-cased.
pub fn normalize_mac(mac: &str) -> Result<String> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(invalid("mac", mac, "must look like BC:24:11:12:34:56"));
    }
    let first = u8::from_str_radix(parts[0], 16).map_err(|_| invalid("mac", mac, "bad octet"))?;
    if first & 1 == 1 {
        return Err(invalid("mac", mac, "is a multicast address"));
    }
    Ok(mac.to_ascii_uppercase())
}

/// Which address family a PVE CIDR format takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CidrFamily {
    /// `CIDRv4` (`pve_verify_cidrv4`).
    V4,
    /// `CIDRv6` (`pve_verify_cidrv6`).
    V6,
}

/// Validate a CIDR as PVE's `CIDRv4` / `CIDRv6` formats do (pve-common
/// `PVE::JSONSchema::pve_verify_cidrv4` / `pve_verify_cidrv6`: `/(\d+)$` with `$1 > 7` and
/// `$1 <= 32` / `128`). [`waddle_net::Cidr::parse`] already refuses a signed prefix (`+8`,
/// `-8`) and one past the family's width; PVE also refuses prefixes below 8.
pub fn validate_pve_cidr(field: &str, cidr: &str, family: CidrFamily) -> Result<()> {
    let c = waddle_net::Cidr::parse(cidr)
        .map_err(|e| Error::InvalidArgument(format!("{field}: {cidr:?}: {e}")))?;
    let want_v6 = family == CidrFamily::V6;
    if c.addr.is_ipv6() != want_v6 {
        let fam = if want_v6 { "IPv6" } else { "IPv4" };
        return Err(invalid(field, cidr, &format!("is not an {fam} CIDR")));
    }
    if c.prefix < 8 {
        return Err(invalid(
            field,
            cidr,
            "prefix length must be at least 8 (Proxmox VE refuses shorter prefixes)",
        ));
    }
    Ok(())
}

/// Validate an IPv4 CIDR (`10.10.0.1/24`) as PVE's `CIDRv4` format (see [`validate_pve_cidr`]).
pub fn validate_cidr4(cidr: &str) -> Result<()> {
    validate_pve_cidr("cidr", cidr, CidrFamily::V4)
}

/// A DNS name as PVE's `dns-name` format (labels of letters, digits, hyphens).
pub fn validate_dns_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(field, name, "is not a valid DNS name"))
    }
}

/// A PVE tag (`pve-tag`): `[a-z0-9_][a-z0-9_\-+.]*`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-+.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "tags",
            tag,
            "is not a valid tag (lower-case letters, digits, _-+.)",
        ))
    }
}

/// Disk bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    /// `scsiN` (0..=30)
    Scsi,
    /// `virtioN` (0..=15)
    Virtio,
    /// `sataN` (0..=5)
    Sata,
    /// `ideN` (0..=3)
    Ide,
}

impl DiskBus {
    fn prefix(self) -> &'static str {
        match self {
            DiskBus::Scsi => "scsi",
            DiskBus::Virtio => "virtio",
            DiskBus::Sata => "sata",
            DiskBus::Ide => "ide",
        }
    }
    pub(crate) fn max_index(self) -> u8 {
        match self {
            DiskBus::Scsi => 30,
            DiskBus::Virtio => 15,
            DiskBus::Sata => 5,
            DiskBus::Ide => 3,
        }
    }
    /// The config key, e.g. `scsi0`.
    pub fn key(self, index: u8) -> String {
        format!("{}{}", self.prefix(), index)
    }
}

/// A data disk: a new volume of `size_gib` on `storage`, or a volume imported from
/// `import_from` (an `import` content volume such as `local:import/talos.qcow2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Bus.
    pub bus: DiskBus,
    /// Index on the bus.
    pub index: u8,
    /// Target storage id.
    pub storage: String,
    /// Size in GiB: of a new empty disk, or, for an imported disk, the size it is grown to after
    /// the import ([`crate::Client::create_vm`] resizes it; never shrinks). 0 keeps the image size.
    pub size_gib: u32,
    /// Source volume to import (`import-from=`).
    pub import_from: Option<String>,
    /// Image format on file storages (`format=`), e.g. `qcow2` or `raw`.
    pub format: Option<String>,
    /// `discard=on`
    pub discard: bool,
    /// `ssd=1`
    pub ssd: bool,
    /// `iothread=1`
    pub iothread: bool,
    /// `cache=` mode.
    pub cache: Option<String>,
}

impl DiskSpec {
    /// `scsi{index}` imported from `volid` onto `storage`.
    pub fn import(index: u8, storage: &str, volid: &str) -> Self {
        DiskSpec {
            bus: DiskBus::Scsi,
            index,
            storage: storage.to_string(),
            size_gib: 0,
            import_from: Some(volid.to_string()),
            format: None,
            discard: true,
            ssd: false,
            iothread: false,
            cache: None,
        }
    }
    /// An empty `scsi{index}` of `size_gib`.
    pub fn empty(index: u8, storage: &str, size_gib: u32) -> Self {
        DiskSpec {
            size_gib,
            import_from: None,
            ..DiskSpec::import(index, storage, "")
        }
    }
    /// Config key (`scsi0`).
    pub fn key(&self) -> String {
        self.bus.key(self.index)
    }
    /// Render the property string.
    pub fn render(&self) -> Result<String> {
        validate_storage(&self.storage)?;
        if self.index > self.bus.max_index() {
            return Err(Error::InvalidArgument(format!(
                "disk: index {} out of range for {}",
                self.index,
                self.bus.prefix()
            )));
        }
        let mut s = match &self.import_from {
            Some(src) => {
                if src.is_empty() || src.contains(',') || !src.contains(':') {
                    return Err(invalid(
                        "import_from",
                        src,
                        "must be a volume id STORAGE:PATH",
                    ));
                }
                format!("{}:0,import-from={}", self.storage, src)
            }
            None => {
                if self.size_gib == 0 {
                    return Err(Error::InvalidArgument(
                        "disk: size_gib must be at least 1 for a new disk".into(),
                    ));
                }
                format!("{}:{}", self.storage, self.size_gib)
            }
        };
        if let Some(f) = &self.format {
            s.push_str(&format!(",format={f}"));
        }
        if self.discard {
            s.push_str(",discard=on");
        }
        if self.ssd {
            s.push_str(",ssd=1");
        }
        if self.iothread {
            s.push_str(",iothread=1");
        }
        if let Some(c) = &self.cache {
            s.push_str(&format!(",cache={c}"));
        }
        Ok(s)
    }
}

/// Parse a PVE disk size (`size=` in a disk property string: `32G`, `4300M`, `512K`, `1T`,
/// or plain bytes) into bytes.
pub fn parse_disk_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'K') => (&s[..i], 1u64 << 10),
        (i, 'M') => (&s[..i], 1 << 20),
        (i, 'G') => (&s[..i], 1 << 30),
        (i, 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    if !(f.is_finite() && f >= 0.0) {
        return None;
    }
    Some((f * mult as f64) as u64)
}

/// `efidisk0`: OVMF variables store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfiDiskSpec {
    /// Storage id.
    pub storage: String,
    /// `efitype=4m` (true, required for Secure Boot) or `2m`.
    pub efitype_4m: bool,
    /// `pre-enrolled-keys=1`: Microsoft + distribution keys enrolled, Secure Boot on.
    /// `false` leaves the variable store in setup mode so an OS (e.g. Talos' Secure Boot ISO)
    /// can enroll its own keys.
    pub pre_enrolled_keys: bool,
    /// `ms-cert=` (PVE 9): which Microsoft certificate generation to enroll (`2011`, `2023`,
    /// `2023w`, `2023k`); `None` keeps PVE's default.
    pub ms_cert: Option<String>,
}

impl EfiDiskSpec {
    /// A 4m EFI vars disk on `storage`.
    pub fn new(storage: &str, pre_enrolled_keys: bool) -> Self {
        EfiDiskSpec {
            storage: storage.to_string(),
            efitype_4m: true,
            pre_enrolled_keys,
            ms_cert: None,
        }
    }

    /// Render, e.g. `local-lvm:1,efitype=4m,pre-enrolled-keys=1`.
    pub fn render(&self) -> Result<String> {
        validate_storage(&self.storage)?;
        let mut s = format!(
            "{}:1,efitype={},pre-enrolled-keys={}",
            self.storage,
            if self.efitype_4m { "4m" } else { "2m" },
            u8::from(self.pre_enrolled_keys)
        );
        if let Some(m) = &self.ms_cert {
            if !["2011", "2023", "2023w", "2023k"].contains(&m.as_str()) {
                return Err(invalid("ms_cert", m, "must be 2011, 2023, 2023w or 2023k"));
            }
            s.push_str(&format!(",ms-cert={m}"));
        }
        Ok(s)
    }
}

/// `tpmstate0`: TPM state volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmStateSpec {
    /// Storage id.
    pub storage: String,
}

impl TpmStateSpec {
    /// Render, e.g. `local-lvm:1,version=v2.0`.
    pub fn render(&self) -> Result<String> {
        validate_storage(&self.storage)?;
        Ok(format!("{}:1,version=v2.0", self.storage))
    }
}

/// `netN`: a virtual NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSpec {
    /// Index (`net{index}`), 0..=31.
    pub index: u8,
    /// NIC model, normally `virtio`.
    pub model: String,
    /// Fixed MAC address (PVE generates one when absent).
    pub mac: Option<String>,
    /// Bridge (e.g. `vmbr0`) or SDN vnet.
    pub bridge: String,
    /// `firewall=1`
    pub firewall: bool,
    /// VLAN tag.
    pub tag: Option<u16>,
    /// MTU.
    pub mtu: Option<u16>,
}

impl NetSpec {
    /// A virtio NIC on `bridge`.
    pub fn virtio(index: u8, bridge: &str) -> Self {
        NetSpec {
            index,
            model: "virtio".into(),
            mac: None,
            bridge: bridge.to_string(),
            firewall: false,
            tag: None,
            mtu: None,
        }
    }
    /// Config key (`net0`).
    pub fn key(&self) -> String {
        format!("net{}", self.index)
    }
    /// Render, e.g. `virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1`.
    pub fn render(&self) -> Result<String> {
        if self.index > 31 {
            return Err(Error::InvalidArgument(format!(
                "net: index {} out of range (0..=31)",
                self.index
            )));
        }
        if self.model.is_empty()
            || !self
                .model
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(invalid("model", &self.model, "is not a NIC model"));
        }
        validate_bridge(&self.bridge)?;
        let mut s = match &self.mac {
            Some(m) => format!("{}={}", self.model, normalize_mac(m)?),
            None => self.model.clone(),
        };
        s.push_str(&format!(",bridge={}", self.bridge));
        if self.firewall {
            s.push_str(",firewall=1");
        }
        if let Some(t) = self.tag {
            if !(1..=4094).contains(&t) {
                return Err(Error::InvalidArgument(format!(
                    "net: VLAN tag {t} out of range"
                )));
            }
            s.push_str(&format!(",tag={t}"));
        }
        if let Some(m) = self.mtu {
            s.push_str(&format!(",mtu={m}"));
        }
        Ok(s)
    }
}

/// A NIC as read back from a VM config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Model (`virtio`).
    pub model: String,
    /// MAC address (upper-case).
    pub mac: Option<String>,
    /// Bridge.
    pub bridge: Option<String>,
    /// Firewall flag.
    pub firewall: bool,
    /// VLAN tag.
    pub tag: Option<u16>,
}

const NIC_MODELS: &[&str] = &[
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
];

impl NetConfig {
    /// Parse a `netN` value (`virtio=MAC,bridge=...` or `model=virtio,macaddr=MAC,...`).
    pub fn parse(s: &str) -> Option<NetConfig> {
        let mut cfg = NetConfig {
            model: String::new(),
            mac: None,
            bridge: None,
            firewall: false,
            tag: None,
        };
        for (k, v) in parse_property_string(s, Some("model")) {
            match k.as_str() {
                "model" => cfg.model = v,
                "macaddr" => cfg.mac = Some(v.to_ascii_uppercase()),
                "bridge" => cfg.bridge = Some(v),
                "firewall" => cfg.firewall = v == "1",
                "tag" => cfg.tag = v.parse().ok(),
                m if NIC_MODELS.contains(&m) => {
                    cfg.model = m.to_string();
                    cfg.mac = Some(v.to_ascii_uppercase());
                }
                _ => {}
            }
        }
        if cfg.model.is_empty() {
            None
        } else {
            Some(cfg)
        }
    }
}

/// A CD-ROM drive (`ideN`/`sataN`/`scsiN` with `media=cdrom`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdromSpec {
    /// Bus (normally IDE).
    pub bus: DiskBus,
    /// Index (normally 2, i.e. `ide2`).
    pub index: u8,
    /// ISO volume (`local:iso/seed.iso`), `None` for an empty drive.
    pub volume: Option<String>,
}

impl CdromSpec {
    /// `ide2` with the given ISO.
    pub fn ide2(volume: &str) -> Self {
        CdromSpec {
            bus: DiskBus::Ide,
            index: 2,
            volume: Some(volume.to_string()),
        }
    }
    /// Config key.
    pub fn key(&self) -> String {
        self.bus.key(self.index)
    }
    /// Render, e.g. `local:iso/seed.iso,media=cdrom`.
    pub fn render(&self) -> Result<String> {
        if self.index > self.bus.max_index() {
            return Err(Error::InvalidArgument(format!(
                "cdrom: index {} out of range",
                self.index
            )));
        }
        match &self.volume {
            Some(v) => {
                if !v.contains(":iso/") || v.contains(',') {
                    return Err(invalid(
                        "cdrom",
                        v,
                        "must be an ISO volume id STORAGE:iso/NAME.iso",
                    ));
                }
                Ok(format!("{v},media=cdrom"))
            }
            None => Ok("none,media=cdrom".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_strings() {
        let d = DiskSpec::import(0, "local-lvm", "local:import/talos-v1.12.0.qcow2");
        assert_eq!(
            d.render().unwrap(),
            "local-lvm:0,import-from=local:import/talos-v1.12.0.qcow2,discard=on"
        );
        let mut d = DiskSpec::empty(1, "local-lvm", 10);
        d.iothread = true;
        d.ssd = true;
        d.discard = false;
        assert_eq!(d.key(), "scsi1");
        assert_eq!(d.render().unwrap(), "local-lvm:10,ssd=1,iothread=1");
        assert!(DiskSpec::empty(0, "local-lvm", 0).render().is_err());
        assert!(DiskSpec::empty(31, "local-lvm", 1).render().is_err());
        assert!(DiskSpec::import(0, "Local", "local:import/x.qcow2")
            .render()
            .is_err());
        assert!(DiskSpec::import(0, "local", "x.qcow2").render().is_err());
        assert!(DiskSpec::import(0, "local", "local:import/a,b")
            .render()
            .is_err());
    }

    #[test]
    fn efi_tpm_cdrom_strings() {
        let e = EfiDiskSpec::new("local-lvm", true);
        assert_eq!(
            e.render().unwrap(),
            "local-lvm:1,efitype=4m,pre-enrolled-keys=1"
        );
        let e = EfiDiskSpec {
            pre_enrolled_keys: false,
            ..e
        };
        assert_eq!(
            e.render().unwrap(),
            "local-lvm:1,efitype=4m,pre-enrolled-keys=0"
        );
        let t = TpmStateSpec {
            storage: "local-lvm".into(),
        };
        assert_eq!(t.render().unwrap(), "local-lvm:1,version=v2.0");
        let c = CdromSpec::ide2("local:iso/seed-abc.iso");
        assert_eq!(c.key(), "ide2");
        assert_eq!(c.render().unwrap(), "local:iso/seed-abc.iso,media=cdrom");
        assert!(CdromSpec::ide2("local:import/x.qcow2").render().is_err());
        let empty = CdromSpec { volume: None, ..c };
        assert_eq!(empty.render().unwrap(), "none,media=cdrom");
    }

    #[test]
    fn net_strings_roundtrip() {
        let mut n = NetSpec::virtio(0, "vmbr0");
        n.mac = Some("bc:24:11:0a:0b:0c".into());
        n.firewall = true;
        let s = n.render().unwrap();
        assert_eq!(s, "virtio=BC:24:11:0A:0B:0C,bridge=vmbr0,firewall=1");
        let back = NetConfig::parse(&s).unwrap();
        assert_eq!(back.model, "virtio");
        assert_eq!(back.mac.as_deref(), Some("BC:24:11:0A:0B:0C"));
        assert_eq!(back.bridge.as_deref(), Some("vmbr0"));
        assert!(back.firewall);
        let n2 = NetSpec {
            tag: Some(20),
            ..NetSpec::virtio(1, "vnet1")
        };
        assert_eq!(n2.render().unwrap(), "virtio,bridge=vnet1,tag=20");
        let long = NetConfig::parse("model=e1000,macaddr=aa:bb:cc:dd:ee:ff,bridge=vmbr1").unwrap();
        assert_eq!(long.model, "e1000");
        assert_eq!(long.mac.as_deref(), Some("AA:BB:CC:DD:EE:FF"));
        // multicast and malformed MACs, bad bridges
        for bad in [
            "01:00:5e:00:00:01",
            "bc:24:11:0a:0b",
            "zz:24:11:0a:0b:0c",
            "bc-24-11-0a-0b-0c",
        ] {
            assert!(normalize_mac(bad).is_err(), "{bad}");
        }
        let mut bad = NetSpec::virtio(0, "vmbr 0");
        assert!(bad.render().is_err());
        bad.bridge = "0vmbr".into();
        assert!(bad.render().is_err());
        assert!(NetSpec::virtio(32, "vmbr0").render().is_err());
    }

    #[test]
    fn disk_sizes() {
        assert_eq!(parse_disk_size("10G"), Some(10 << 30));
        assert_eq!(parse_disk_size("4300M"), Some(4300 << 20));
        assert_eq!(parse_disk_size("1.5G"), Some(3 << 29));
        assert_eq!(parse_disk_size("1048576"), Some(1 << 20));
        assert_eq!(parse_disk_size("x"), None);
        assert_eq!(parse_disk_size(""), None);
    }

    #[test]
    fn validators() {
        assert!(validate_vmid(100).is_ok());
        assert!(validate_vmid(99).is_err());
        assert!(validate_vmid(1_000_000_000).is_err());
        assert!(validate_node("pve-1").is_ok());
        assert!(validate_node("-pve").is_err());
        assert!(validate_node("pve.example").is_err());
        assert!(validate_storage("local-lvm").is_ok());
        assert!(validate_storage("local-").is_err());
        assert!(validate_cidr4("10.10.0.1/24").is_ok());
        assert!(validate_cidr4("10.10.0.1").is_err());
        assert!(validate_cidr4("10.10.0.300/24").is_err());
        assert!(validate_cidr4("10.10.0.1/33").is_err());
    }

    /// `pve_verify_cidrv4` / `pve_verify_cidrv6`: an unsigned prefix from 8 to the width.
    #[test]
    fn cidr_prefix_at_least_as_strict_as_pve() {
        for ok in ["10.0.0.0/8", "10.0.0.1/32", "10.0.0.1/08", "0.0.0.0/8"] {
            assert!(validate_cidr4(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1/+8",
            "10.0.0.1/-8",
            "10.0.0.1/7",
            "10.0.0.1/0",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/ 8",
            "010.0.0.1/24",
            "fd00::1/64",
        ] {
            assert!(validate_cidr4(bad).is_err(), "{bad}");
        }
        let v6 = |c| validate_pve_cidr("ip6", c, CidrFamily::V6);
        for ok in ["fd00::/8", "fd00::1/128", "fd00::1/064"] {
            assert!(v6(ok).is_ok(), "{ok}");
        }
        for bad in [
            "fd00::1/7",
            "fd00::1/129",
            "fd00::1/+64",
            "fd00::1/-64",
            "10.0.0.1/24",
        ] {
            assert!(v6(bad).is_err(), "{bad}");
        }
        assert!(validate_dns_name("name", "talos-cp-1").is_ok());
        assert!(validate_dns_name("name", "talos_cp").is_err());
        assert!(validate_tag("waddle").is_ok());
        assert!(validate_tag("Waddle").is_err());
        assert_eq!(
            parse_property_string("local:iso/x.iso,media=cdrom", Some("file")),
            vec![
                ("file".to_string(), "local:iso/x.iso".to_string()),
                ("media".to_string(), "cdrom".to_string())
            ]
        );
    }
}
