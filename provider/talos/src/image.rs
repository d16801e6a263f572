//! Talos Image Factory schematics: the canonical form, the schematic ID, and
//! the artifact URLs the factory serves for a schematic.
//!
//! The Image Factory identifies a schematic by the hex SHA-256 of its
//! canonical YAML: the factory's `Schematic` struct marshalled by go-yaml
//! (4-space indent, fields in declaration order `owner`, `overlay`,
//! `customization`; `customization` always present, every other empty field
//! omitted, lists in the order given). This module reproduces that
//! marshalling byte for byte — including go-yaml's choice between plain,
//! single-quoted, double-quoted and literal scalars — and refuses (rather than
//! guesses) the few inputs whose go-yaml rendering it does not reproduce
//! (see [`SchematicError::UnsupportedString`]).
//!
//! It is pure: no I/O, no network. Validation helpers for the
//! `waddle_talos_image` data source (Talos versions, official extension names,
//! kernel arguments, platforms, architectures) live here too.

use std::fmt;

use sha2::{Digest, Sha256};

/// Host of the official Image Factory (HTTP frontend and OCI registry).
pub const FACTORY_HOST: &str = "factory.talos.dev";

/// The schematic ID of the empty schematic (`customization: {}`), as listed by
/// the Image Factory as its well-known default schematic.
pub const DEFAULT_SCHEMATIC_ID: &str =
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";

/// Prefix of official system extension names.
pub const OFFICIAL_EXTENSION_PREFIX: &str = "siderolabs/";

/// Curated list of official Talos system extensions (names without the
/// `siderolabs/` prefix), from the siderolabs/extensions catalogue (core,
/// extra and contrib tiers) plus a few older names the factory still serves
/// for earlier Talos releases. The factory remains the authority on which
/// extension exists for which Talos version; this list refuses typos and
/// third-party images early, at validate time.
pub const OFFICIAL_EXTENSIONS: &[&str] = &[
    // container runtimes
    "crun",
    "ecr-credential-provider",
    "gvisor",
    "gvisor-debug",
    "harbor-credential-provider",
    "kata-containers",
    "soci-snapshotter",
    "spin",
    "stargz-snapshotter",
    "urunc",
    "wasmedge",
    "youki",
    // hypervisors
    "libvirtd",
    // firmware
    "amd-ucode",
    "bnx2-bnx2x",
    "chelsio-firmware",
    "intel-ice-firmware",
    "intel-ucode",
    "qlogic-firmware",
    "realtek-firmware",
    "revpi-firmware",
    // DRM
    "amdgpu",
    "amdgpu-firmware",
    "i915",
    "i915-ucode",
    "intel-npu",
    "panfrost",
    "rockchip-rknn",
    "vc4",
    "xe",
    // drivers
    "amazon-ena",
    "chelsio-drivers",
    "gasket-driver",
    "gpio-pinctrl",
    "hailort",
    "intel-hd-audio",
    "joydev",
    "mei",
    "mellanox-mstflint",
    "tenstorrent",
    "thunderbolt",
    "uhid",
    "uinput",
    "usb-audio-drivers",
    "usb-modem-drivers",
    "v4l-uvc-drivers",
    "xdma-driver",
    // DVB
    "dvb-cx23885",
    "dvb-m88ds3103",
    "dvb-pt3",
    // misc
    "binfmt-misc",
    "glibc",
    // network
    "bird2",
    "cloudflared",
    "lldpd",
    "nebula",
    "netbird",
    "newt",
    "tailscale",
    "zerotier",
    // storage
    "btrfs",
    "cachefilesd",
    "drbd",
    "fuse3",
    "iscsi-tools",
    "mdadm",
    "multipath-tools",
    "nfs-server",
    "nfs-utils",
    "nfsd",
    "nfsrahead",
    "px-fuse",
    "trident-iscsi-tools",
    "zfs",
    // power
    "nut-client",
    // guest agents
    "hyperv-guest-agent",
    "metal-agent",
    "qemu-guest-agent",
    "vmtoolsd-guest-agent",
    "xen-guest-agent",
    // NVIDIA
    "nonfree-kmod-nvidia",
    "nonfree-kmod-nvidia-lts",
    "nonfree-kmod-nvidia-production",
    "nvidia-container-toolkit",
    "nvidia-container-toolkit-lts",
    "nvidia-container-toolkit-production",
    "nvidia-fabricmanager",
    "nvidia-fabricmanager-lts",
    "nvidia-fabricmanager-production",
    "nvidia-gdrdrv-device",
    "nvidia-open-gpu-kernel-modules",
    "nvidia-open-gpu-kernel-modules-lts",
    "nvidia-open-gpu-kernel-modules-production",
    // tools
    "ctr",
    "nvme-cli",
    "util-linux-tools",
];

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a schematic could not be parsed or rendered canonically.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchematicError {
    /// The text is not YAML (or JSON).
    #[error("schematic is not valid YAML: {0}")]
    Parse(String),
    /// The text holds no document at all.
    #[error("schematic is empty: give at least `customization: {{}}`")]
    Empty,
    /// A field the Image Factory does not know (the factory refuses these too).
    #[error("unknown schematic field `{path}`")]
    UnknownField { path: String },
    /// A field holds a value of the wrong type.
    #[error("schematic field `{path}` must be {expected}")]
    WrongType {
        path: String,
        expected: &'static str,
    },
    /// A META key outside 0..=255.
    #[error("schematic field `{path}` must be an integer between 0 and 255")]
    MetaKeyOutOfRange { path: String },
    /// `overlay.options` holds data; its canonical form (arbitrary YAML) is
    /// not reproduced here.
    #[error("schematic field `overlay.options` is not supported by waddle (compute the ID with the Image Factory instead)")]
    UnsupportedOverlayOptions,
    /// A string whose go-yaml rendering this module does not reproduce
    /// exactly (Unicode line/paragraph separators, NEL, byte-order marks,
    /// multi-line strings starting with a space or a line break, or
    /// multi-line list items). Refused rather than risk a wrong ID.
    #[error("schematic field `{path}`: {reason}")]
    UnsupportedString { path: String, reason: &'static str },
}

/// Why an image request is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("invalid Talos version {value:?}: {reason} (expected a release tag like \"v1.12.4\")")]
    InvalidTalosVersion { value: String, reason: &'static str },
    #[error("{name:?} is not an official system extension name: names look like \"siderolabs/qemu-guest-agent\"{hint}")]
    InvalidExtensionName { name: String, hint: String },
    #[error("unknown official system extension {name:?} (known: {known})")]
    UnknownExtension { name: String, known: String },
    #[error("extension {name:?} is listed more than once")]
    DuplicateExtension { name: String },
    #[error("invalid kernel argument {arg:?}: {reason}")]
    InvalidKernelArg { arg: String, reason: &'static str },
    #[error("unsupported platform {value:?} (supported: {supported})")]
    UnsupportedPlatform { value: String, supported: String },
    #[error("unsupported architecture {value:?} (supported: amd64, arm64)")]
    UnsupportedArch { value: String },
    #[error(
        "platform {platform:?} has no SecureBoot images (SecureBoot is available for: {supported})"
    )]
    SecureBootUnsupported { platform: String, supported: String },
    #[error(transparent)]
    Schematic(#[from] SchematicError),
}

// ---------------------------------------------------------------------------
// Schematic model
// ---------------------------------------------------------------------------

/// An Image Factory schematic (the subset waddle models: everything except
/// non-empty `overlay.options`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schematic {
    /// `owner` (omitted when empty).
    pub owner: String,
    /// `overlay` (omitted when image and name are both empty).
    pub overlay: Overlay,
    /// `customization` (always present; `{}` when empty).
    pub customization: Customization,
}

/// `overlay`: an SBC overlay image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    pub image: String,
    pub name: String,
}

/// `customization`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Customization {
    /// `extraKernelArgs`, order kept.
    pub extra_kernel_args: Vec<String>,
    /// `meta`: initial META values.
    pub meta: Vec<MetaValue>,
    /// `systemExtensions`.
    pub system_extensions: SystemExtensions,
    /// `secureboot`.
    pub secureboot: SecureBootCustomization,
}

/// One `meta` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaValue {
    pub key: u8,
    pub value: String,
}

/// `systemExtensions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemExtensions {
    /// `officialExtensions`, order kept (not sorted: order changes the ID).
    pub official_extensions: Vec<String>,
}

/// `secureboot` customization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecureBootCustomization {
    pub include_well_known_certificates: bool,
}

impl Overlay {
    fn is_empty(&self) -> bool {
        self.image.is_empty() && self.name.is_empty()
    }
}

impl Customization {
    fn is_empty(&self) -> bool {
        self.extra_kernel_args.is_empty()
            && self.meta.is_empty()
            && self.system_extensions.official_extensions.is_empty()
            && !self.secureboot.include_well_known_certificates
    }
}

impl Schematic {
    /// A schematic with the given official extensions and kernel arguments
    /// (the shape the Image Factory web UI produces).
    pub fn with_extensions_and_args(extensions: &[String], kernel_args: &[String]) -> Self {
        Schematic {
            customization: Customization {
                extra_kernel_args: kernel_args.to_vec(),
                system_extensions: SystemExtensions {
                    official_extensions: extensions.to_vec(),
                },
                ..Customization::default()
            },
            ..Schematic::default()
        }
    }

    /// The canonical YAML (exactly what the Image Factory hashes).
    pub fn canonical_yaml(&self) -> Result<String, SchematicError> {
        let mut out = String::new();
        if !self.owner.is_empty() {
            out.push_str("owner: ");
            write_scalar(&mut out, &self.owner, 4, "owner")?;
        }
        if !self.overlay.is_empty() {
            out.push_str("overlay:\n    image: ");
            write_scalar(&mut out, &self.overlay.image, 8, "overlay.image")?;
            out.push_str("    name: ");
            write_scalar(&mut out, &self.overlay.name, 8, "overlay.name")?;
        }
        let c = &self.customization;
        if c.is_empty() {
            out.push_str("customization: {}\n");
            return Ok(out);
        }
        out.push_str("customization:\n");
        if !c.extra_kernel_args.is_empty() {
            out.push_str("    extraKernelArgs:\n");
            for (i, arg) in c.extra_kernel_args.iter().enumerate() {
                out.push_str("        - ");
                write_seq_scalar(&mut out, arg, || {
                    format!("customization.extraKernelArgs[{i}]")
                })?;
            }
        }
        if !c.meta.is_empty() {
            out.push_str("    meta:\n");
            for (i, m) in c.meta.iter().enumerate() {
                out.push_str("        - key: ");
                out.push_str(&m.key.to_string());
                out.push_str("\n          value: ");
                write_scalar(
                    &mut out,
                    &m.value,
                    12,
                    &format!("customization.meta[{i}].value"),
                )?;
            }
        }
        if !c.system_extensions.official_extensions.is_empty() {
            out.push_str("    systemExtensions:\n        officialExtensions:\n");
            for (i, ext) in c.system_extensions.official_extensions.iter().enumerate() {
                out.push_str("            - ");
                write_seq_scalar(&mut out, ext, || {
                    format!("customization.systemExtensions.officialExtensions[{i}]")
                })?;
            }
        }
        if c.secureboot.include_well_known_certificates {
            out.push_str("    secureboot:\n        includeWellKnownCertificates: true\n");
        }
        Ok(out)
    }

    /// The schematic ID: hex SHA-256 of [`Schematic::canonical_yaml`].
    pub fn id(&self) -> Result<String, SchematicError> {
        Ok(sha256_hex(self.canonical_yaml()?.as_bytes()))
    }

    /// Parse a schematic from YAML or JSON text (the body one would POST to
    /// the Image Factory). Unknown fields are refused, as the factory does.
    pub fn from_yaml(text: &str) -> Result<Self, SchematicError> {
        use serde_yaml_ng::Value;
        if text.trim().is_empty() {
            return Err(SchematicError::Empty);
        }
        let doc: Value =
            serde_yaml_ng::from_str(text).map_err(|e| SchematicError::Parse(e.to_string()))?;
        let mut s = Schematic::default();
        for (key, value) in mapping(&doc, "")? {
            match key.as_str() {
                "owner" => s.owner = string(value, "owner")?,
                "overlay" => {
                    for (k, v) in mapping(value, "overlay")? {
                        match k.as_str() {
                            "image" => s.overlay.image = string(v, "overlay.image")?,
                            "name" => s.overlay.name = string(v, "overlay.name")?,
                            "options" => match v {
                                Value::Null => {}
                                Value::Mapping(m) if m.is_empty() => {}
                                Value::Mapping(_) => {
                                    return Err(SchematicError::UnsupportedOverlayOptions)
                                }
                                _ => {
                                    return Err(SchematicError::WrongType {
                                        path: "overlay.options".into(),
                                        expected: "a mapping",
                                    })
                                }
                            },
                            _ => return Err(unknown("overlay.", &k)),
                        }
                    }
                }
                "customization" => {
                    let c = &mut s.customization;
                    for (k, v) in mapping(value, "customization")? {
                        match k.as_str() {
                            "extraKernelArgs" => {
                                c.extra_kernel_args =
                                    string_list(v, "customization.extraKernelArgs")?
                            }
                            "meta" => c.meta = meta_list(v)?,
                            "systemExtensions" => {
                                for (k2, v2) in mapping(v, "customization.systemExtensions")? {
                                    match k2.as_str() {
                                        "officialExtensions" => {
                                            c.system_extensions.official_extensions = string_list(
                                                v2,
                                                "customization.systemExtensions.officialExtensions",
                                            )?
                                        }
                                        _ => {
                                            return Err(unknown(
                                                "customization.systemExtensions.",
                                                &k2,
                                            ))
                                        }
                                    }
                                }
                            }
                            "secureboot" => {
                                for (k2, v2) in mapping(v, "customization.secureboot")? {
                                    match k2.as_str() {
                                        "includeWellKnownCertificates" => {
                                            c.secureboot.include_well_known_certificates = match v2
                                            {
                                                Value::Bool(b) => *b,
                                                Value::Null => false,
                                                _ => return Err(SchematicError::WrongType {
                                                    path: "customization.secureboot.includeWellKnownCertificates".into(),
                                                    expected: "a boolean",
                                                }),
                                            }
                                        }
                                        _ => {
                                            return Err(unknown("customization.secureboot.", &k2))
                                        }
                                    }
                                }
                            }
                            _ => return Err(unknown("customization.", &k)),
                        }
                    }
                }
                _ => return Err(unknown("", &key)),
            }
        }
        Ok(s)
    }
}

/// Compute the schematic ID of a schematic given as YAML or JSON text.
pub fn schematic_id_from_yaml(text: &str) -> Result<String, SchematicError> {
    Schematic::from_yaml(text)?.id()
}

fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn unknown(prefix: &str, key: &str) -> SchematicError {
    SchematicError::UnknownField {
        path: format!("{prefix}{key}"),
    }
}

type Entries<'a> = Vec<(String, &'a serde_yaml_ng::Value)>;

/// A mapping's entries (null counts as an empty mapping, as in go-yaml).
fn mapping<'a>(v: &'a serde_yaml_ng::Value, path: &str) -> Result<Entries<'a>, SchematicError> {
    use serde_yaml_ng::Value;
    let wrong = || SchematicError::WrongType {
        path: if path.is_empty() {
            "(document)".into()
        } else {
            path.into()
        },
        expected: "a mapping",
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Mapping(m) => m
            .iter()
            .map(|(k, val)| match k {
                Value::String(s) => Ok((s.clone(), val)),
                _ => Err(wrong()),
            })
            .collect(),
        _ => Err(wrong()),
    }
}

fn string(v: &serde_yaml_ng::Value, path: &str) -> Result<String, SchematicError> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(SchematicError::WrongType {
            path: path.into(),
            expected: "a string (quote numbers and booleans)",
        }),
    }
}

fn string_list(v: &serde_yaml_ng::Value, path: &str) -> Result<Vec<String>, SchematicError> {
    use serde_yaml_ng::Value;
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(item, &format!("{path}[{i}]")))
            .collect(),
        _ => Err(SchematicError::WrongType {
            path: path.into(),
            expected: "a list of strings",
        }),
    }
}

fn meta_list(v: &serde_yaml_ng::Value) -> Result<Vec<MetaValue>, SchematicError> {
    use serde_yaml_ng::Value;
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Sequence(items) => items,
        _ => {
            return Err(SchematicError::WrongType {
                path: "customization.meta".into(),
                expected: "a list of {key, value} mappings",
            })
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let base = format!("customization.meta[{i}]");
        let mut m = MetaValue::default();
        for (k, val) in mapping(item, &base)? {
            match k.as_str() {
                "key" => {
                    let path = format!("{base}.key");
                    m.key = match val {
                        Value::Null => 0,
                        Value::Number(n) => n
                            .as_u64()
                            .and_then(|n| u8::try_from(n).ok())
                            .ok_or(SchematicError::MetaKeyOutOfRange { path })?,
                        _ => return Err(SchematicError::MetaKeyOutOfRange { path }),
                    }
                }
                "value" => m.value = string(val, &format!("{base}.value"))?,
                _ => return Err(unknown(&format!("{base}."), &k)),
            }
        }
        out.push(m);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// go-yaml scalar rendering
// ---------------------------------------------------------------------------
//
// go-yaml (v3, and v4 which keeps its emitter) renders a Go string as:
//   * a literal block (`|`, `|-`, `|+`) when it contains "\n" and block style
//     is allowed;
//   * double-quoted when it would otherwise resolve to another type (null,
//     bool, int, float, timestamp), looks like a YAML 1.1 bool or base-60
//     float, or holds non-printable characters;
//   * single-quoted when plain style is not allowed in block context
//     (indicator characters, leading/trailing spaces, ": ", " #", ...);
//   * plain otherwise.
// The rules below were checked against go-yaml v3's output (Debian's
// golang-gopkg-yaml.v3-dev, marshalling the factory's struct): every expected
// string in the tests was produced by go-yaml itself, and 6,000 random short
// strings over an alphabet of indicators, quotes, digits, tabs, line breaks
// and non-ASCII characters rendered identically (or were refused).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Characters go-yaml treats as line breaks or renders in ways this module
/// does not reproduce.
fn unsupported_char(c: char) -> Option<&'static str> {
    match c {
        '\u{85}' | '\u{2028}' | '\u{2029}' => {
            Some("Unicode line breaks (NEL, U+2028, U+2029) are not supported")
        }
        '\u{feff}' => Some("byte-order marks (U+FEFF) are not supported"),
        _ => None,
    }
}

/// go-yaml's `is_printable`.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

fn is_blank(c: Option<char>) -> bool {
    // go-yaml's is_blankz: space, tab, line break or end of input.
    matches!(c, None | Some(' ') | Some('\t') | Some('\n') | Some('\r'))
}

/// Whether go-yaml's emitter allows the plain style for `s` in block context
/// (`yaml_emitter_analyze_scalar`'s `block_plain_allowed`), for a single-line
/// string of printable characters.
fn block_plain_allowed(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    if chars[0] == ' ' || chars[chars.len() - 1] == ' ' {
        return false;
    }
    let mut preceded_by_ws = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_ws = is_blank(chars.get(i + 1).copied());
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => return false,
                '?' | ':' | '-' if followed_by_ws => return false,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => return false,
                '#' if preceded_by_ws => return false,
                _ => {}
            }
        }
        preceded_by_ws = is_blank(Some(c));
    }
    true
}

/// YAML 1.1 booleans go-yaml v3 still quotes for compatibility.
fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// go-yaml's `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`.
fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i >= b.len() || !b[i].is_ascii_digit() {
        return false;
    }
    i += 1;
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while i < b.len() && b[i] == b':' {
        i += 1;
        // [0-5]?[0-9]
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() && i - start < 2 {
            i += 1;
        }
        match i - start {
            1 => {}
            2 if b[start] <= b'5' => {}
            2 => {
                // "[0-5]?" failed to take the first digit; regex backtracks to
                // a single digit, after which the next char must be ':' / '.'
                // / end — i.e. the second digit breaks the match.
                return false;
            }
            _ => return false,
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// Whether go-yaml's resolver would read plain `s` as something other than a
/// string (null, bool, int, float or timestamp).
fn resolves_to_non_string(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", ".nan",
        ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf",
        "-.INF",
    ];
    if SPECIAL.contains(&s) {
        return true;
    }
    let first = match s.as_bytes().first() {
        Some(b) => *b,
        None => return true,
    };
    match first {
        b'.' => is_go_decimal_float(s),
        b'0'..=b'9' | b'+' | b'-' => {
            if is_timestamp(s) {
                return true;
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            is_go_int(&plain) || (is_yaml_style_float(&plain) && is_finite_float(&plain))
        }
        _ => false,
    }
}

/// `strconv.ParseFloat` success for a string starting with '.': a decimal
/// float `.digits[e[+-]digits]` (hex floats need a 0x prefix, "inf"/"nan"
/// spellings don't start with '.').
fn is_go_decimal_float(s: &str) -> bool {
    let rest = &s[1..];
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(p) => (&rest[..p], Some(&rest[p + 1..])),
        None => (rest, None),
    };
    if mantissa.is_empty() || !mantissa.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

/// `strconv.ParseInt(s, 0, 64)` or `strconv.ParseUint(s, 0, 64)` succeeds.
fn is_go_int(s: &str) -> bool {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let signed = s.starts_with(['+', '-']);
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return false;
    }
    match u128::from_str_radix(digits, radix) {
        Ok(v) => {
            if neg {
                v <= (i64::MAX as u128) + 1
            } else if signed {
                v <= i64::MAX as u128
            } else {
                v <= u64::MAX as u128
            }
        }
        Err(_) => false,
    }
}

/// go-yaml's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// `strconv.ParseFloat` returns no range error.
fn is_finite_float(s: &str) -> bool {
    s.parse::<f64>().map(f64::is_finite).unwrap_or(false)
}

/// go-yaml's `parseTimestamp`: 4 digits then '-', then one of the layouts
/// "2006-1-2", "2006-1-2 15:4:5.999999999",
/// "2006-1-2T15:4:5.999999999Z07:00" (also with a lower-case 't').
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut i = 5;
    // 1-2 digit numbers, Go's time.Parse for "1", "2", "15", "4", "5".
    let num = |i: &mut usize, max: u32| -> Option<u32> {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < 2 {
            *i += 1;
        }
        if *i == start {
            return None;
        }
        let v: u32 = s[start..*i].parse().ok()?;
        (v <= max).then_some(v)
    };
    let year: u32 = match s[..4].parse() {
        Ok(y) => y,
        Err(_) => return false,
    };
    let Some(month) = num(&mut i, 12) else {
        return false;
    };
    if month == 0 || i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    let Some(day) = num(&mut i, 31) else {
        return false;
    };
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days_in_month {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let with_zone = match b[i] {
        b'T' | b't' => true,
        b' ' => false,
        _ => return false,
    };
    i += 1;
    if num(&mut i, 23).is_none() || i >= b.len() || b[i] != b':' {
        return false;
    }
    i += 1;
    if num(&mut i, 59).is_none() || i >= b.len() || b[i] != b':' {
        return false;
    }
    i += 1;
    if num(&mut i, 59).is_none() {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        let start = i + 1;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if !with_zone {
        return i == b.len();
    }
    if i < b.len() && b[i] == b'Z' {
        return i + 1 == b.len();
    }
    // ±hh:mm
    if b.len() - i != 6 || !(b[i] == b'+' || b[i] == b'-') || b[i + 3] != b':' {
        return false;
    }
    [1, 2, 4, 5].iter().all(|&k| b[i + k].is_ascii_digit())
}

fn choose_style(s: &str, path: &str) -> Result<Style, SchematicError> {
    if let Some(reason) = s.chars().find_map(unsupported_char) {
        return Err(SchematicError::UnsupportedString {
            path: path.into(),
            reason,
        });
    }
    let special = s.chars().any(|c| !is_printable(c));
    if s.contains('\n') {
        // Literal block unless the emitter's analysis forbids block style.
        // go-yaml keeps tabs in literal blocks (observed: "a\t\nb" is
        // emitted as a literal block) while a single-line string with a tab
        // is double-quoted.
        let special = s.chars().any(|c| c != '\t' && !is_printable(c));
        let space_break = s.contains(" \n");
        let trailing_space = s.ends_with(' ');
        if special || space_break || trailing_space {
            return Ok(Style::Double);
        }
        if s.starts_with(' ') || s.starts_with('\n') {
            return Err(SchematicError::UnsupportedString {
                path: path.into(),
                reason:
                    "multi-line strings starting with a space or a line break are not supported",
            });
        }
        return Ok(Style::Literal);
    }
    if special || resolves_to_non_string(s) || is_base60_float(s) || is_old_bool(s) {
        return Ok(Style::Double);
    }
    if block_plain_allowed(s) {
        Ok(Style::Plain)
    } else {
        Ok(Style::Single)
    }
}

/// Write `s` as a mapping value (followed by a newline). `indent` is the
/// column of a literal block's content.
fn write_scalar(
    out: &mut String,
    s: &str,
    indent: usize,
    path: &str,
) -> Result<(), SchematicError> {
    match choose_style(s, path)? {
        Style::Plain => out.push_str(s),
        Style::Single => {
            out.push('\'');
            out.push_str(&s.replace('\'', "''"));
            out.push('\'');
        }
        Style::Double => write_double_quoted(out, s),
        Style::Literal => {
            out.push('|');
            if !s.ends_with('\n') {
                out.push('-');
            } else if s.ends_with("\n\n") || s == "\n" {
                out.push('+');
            }
            out.push('\n');
            let body = s.strip_suffix('\n').unwrap_or(s);
            for line in body.split('\n') {
                if !line.is_empty() {
                    out.push_str(&" ".repeat(indent));
                    out.push_str(line);
                }
                out.push('\n');
            }
            return Ok(());
        }
    }
    out.push('\n');
    Ok(())
}

/// Write `s` as a sequence item (multi-line items are refused).
fn write_seq_scalar(
    out: &mut String,
    s: &str,
    path: impl Fn() -> String,
) -> Result<(), SchematicError> {
    if s.contains('\n') {
        let p = path();
        if choose_style(s, &p)? == Style::Literal {
            return Err(SchematicError::UnsupportedString {
                path: p,
                reason: "multi-line list items are not supported",
            });
        }
    }
    write_scalar(out, s, 0, &path())
}

fn write_double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{b}' => out.push_str("\\v"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_printable(c) => out.push(c),
            c => {
                let u = c as u32;
                if u <= 0xFF {
                    out.push_str(&format!("\\x{u:02X}"));
                } else if u <= 0xFFFF {
                    out.push_str(&format!("\\u{u:04X}"));
                } else {
                    out.push_str(&format!("\\U{u:08X}"));
                }
            }
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------
// Validation for the data source
// ---------------------------------------------------------------------------

/// Validate a Talos release tag: `v` + semantic version (`v1.12.4`,
/// `v1.13.0-beta.1`). Build metadata (`+...`) is refused: OCI tags cannot
/// carry `+`.
pub fn validate_talos_version(v: &str) -> Result<(), ImageError> {
    let err = |reason| ImageError::InvalidTalosVersion {
        value: v.to_string(),
        reason,
    };
    if v.len() > 128 {
        return Err(err("too long"));
    }
    let Some(rest) = v.strip_prefix('v') else {
        return Err(err("must start with 'v'"));
    };
    if rest.contains('+') {
        return Err(err("build metadata ('+...') is not allowed"));
    }
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return Err(err("must have MAJOR.MINOR.PATCH"));
    }
    for p in &parts {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("MAJOR, MINOR and PATCH must be numbers"));
        }
        if p.len() > 1 && p.starts_with('0') {
            return Err(err("numbers must not have leading zeros"));
        }
        if p.len() > 9 {
            return Err(err("number too large"));
        }
    }
    if let Some(pre) = pre {
        for id in pre.split('.') {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                return Err(err("pre-release identifiers must be [0-9A-Za-z-]+"));
            }
            if id.len() > 1 && id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(
                    "numeric pre-release identifiers must not have leading zeros",
                ));
            }
        }
    }
    Ok(())
}

/// Validate an official extension name (`siderolabs/<name>` with `<name>` in
/// [`OFFICIAL_EXTENSIONS`]).
pub fn validate_extension_name(name: &str) -> Result<(), ImageError> {
    match name.strip_prefix(OFFICIAL_EXTENSION_PREFIX) {
        Some(short) if OFFICIAL_EXTENSIONS.contains(&short) => Ok(()),
        Some(_) => Err(ImageError::UnknownExtension {
            name: name.to_string(),
            known: OFFICIAL_EXTENSIONS.join(", "),
        }),
        None => {
            let hint = if OFFICIAL_EXTENSIONS.contains(&name) {
                format!("; did you mean \"{OFFICIAL_EXTENSION_PREFIX}{name}\"?")
            } else {
                String::new()
            };
            Err(ImageError::InvalidExtensionName {
                name: name.to_string(),
                hint,
            })
        }
    }
}

/// Validate a list of extension names (each official, no duplicates).
pub fn validate_extensions(names: &[String]) -> Result<(), (usize, ImageError)> {
    for (i, n) in names.iter().enumerate() {
        validate_extension_name(n).map_err(|e| (i, e))?;
        if names[..i].contains(n) {
            return Err((i, ImageError::DuplicateExtension { name: n.clone() }));
        }
    }
    Ok(())
}

/// Validate one kernel argument: `key` or `key=value`; the key is made of
/// `[A-Za-z0-9_.-]` (and does not start with '.' or '='), the value of
/// printable ASCII without whitespace or quotes.
pub fn validate_kernel_arg(arg: &str) -> Result<(), ImageError> {
    let err = |reason| ImageError::InvalidKernelArg {
        arg: arg.to_string(),
        reason,
    };
    if arg.is_empty() {
        return Err(err("must not be empty"));
    }
    if arg.len() > 1024 {
        return Err(err("too long (max 1024 bytes)"));
    }
    for c in arg.chars() {
        if c.is_whitespace() {
            return Err(err("must not contain whitespace"));
        }
        if c.is_control() {
            return Err(err("must not contain control characters"));
        }
        if c == '"' || c == '\'' || c == '`' {
            return Err(err("must not contain quotes"));
        }
        if !c.is_ascii() {
            return Err(err("must be ASCII"));
        }
    }
    let key = arg.split_once('=').map(|(k, _)| k).unwrap_or(arg);
    if key.is_empty() {
        return Err(err("must start with a parameter name (key or key=value)"));
    }
    if key.starts_with('.') {
        return Err(err("parameter name must not start with '.'"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(err(
            "parameter name may only contain letters, digits, '_', '-' and '.'",
        ));
    }
    Ok(())
}

/// CPU architecture of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [&'static str; 2] = ["amd64", "arm64"];

    pub fn parse(s: &str) -> Result<Self, ImageError> {
        match s {
            "amd64" => Ok(Arch::Amd64),
            "arm64" => Ok(Arch::Arm64),
            _ => Err(ImageError::UnsupportedArch {
                value: s.to_string(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the factory serves for a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// Talos platform name (`nocloud`, `metal`, ...).
    pub name: &'static str,
    /// Disk image file suffix (after `<platform>-<arch>[-secureboot]`).
    pub disk_image_suffix: &'static str,
    /// Whether the factory builds a bootable ISO for it.
    pub iso: bool,
    /// Whether SecureBoot assets exist for it.
    pub secureboot: bool,
}

/// Platforms waddle knows the factory's artifact names for.
pub const PLATFORMS: &[Platform] = &[
    Platform {
        name: "nocloud",
        disk_image_suffix: ".qcow2",
        iso: true,
        secureboot: true,
    },
    Platform {
        name: "metal",
        disk_image_suffix: ".raw.xz",
        iso: true,
        secureboot: true,
    },
    Platform {
        name: "aws",
        disk_image_suffix: ".raw.xz",
        iso: false,
        secureboot: false,
    },
    Platform {
        name: "gcp",
        disk_image_suffix: ".raw.tar.gz",
        iso: false,
        secureboot: false,
    },
];

impl Platform {
    pub fn parse(s: &str) -> Result<&'static Platform, ImageError> {
        PLATFORMS
            .iter()
            .find(|p| p.name == s)
            .ok_or_else(|| ImageError::UnsupportedPlatform {
                value: s.to_string(),
                supported: PLATFORMS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

fn secureboot_platforms() -> String {
    PLATFORMS
        .iter()
        .filter(|p| p.secureboot)
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validate a platform/SecureBoot combination.
pub fn validate_platform(
    platform: &str,
    secureboot: bool,
) -> Result<&'static Platform, ImageError> {
    let p = Platform::parse(platform)?;
    if secureboot && !p.secureboot {
        return Err(ImageError::SecureBootUnsupported {
            platform: platform.to_string(),
            supported: secureboot_platforms(),
        });
    }
    Ok(p)
}

/// Inputs of the `waddle_talos_image` data source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    pub talos_version: String,
    pub extensions: Vec<String>,
    pub extra_kernel_args: Vec<String>,
    pub secureboot: bool,
    pub platform: String,
    pub arch: String,
}

impl Default for ImageRequest {
    fn default() -> Self {
        ImageRequest {
            talos_version: String::new(),
            extensions: Vec::new(),
            extra_kernel_args: Vec::new(),
            secureboot: false,
            platform: "nocloud".into(),
            arch: "amd64".into(),
        }
    }
}

/// Everything derived from an [`ImageRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArtifacts {
    pub schematic_id: String,
    pub schematic_yaml: String,
    /// `factory.talos.dev/<platform>-installer[-secureboot]/<id>:<version>`.
    pub installer_image: String,
    /// `https://factory.talos.dev/image/<id>/<version>/<platform>-<arch>[-secureboot]<suffix>`.
    pub disk_image_url: String,
    /// `https://factory.talos.dev/image/<id>/<version>/<platform>-<arch>[-secureboot].iso`,
    /// for platforms with ISOs.
    pub iso_url: Option<String>,
}

impl ImageRequest {
    /// Validate every field; the first error wins.
    pub fn validate(&self) -> Result<(), ImageError> {
        validate_talos_version(&self.talos_version)?;
        validate_extensions(&self.extensions).map_err(|(_, e)| e)?;
        for a in &self.extra_kernel_args {
            validate_kernel_arg(a)?;
        }
        validate_platform(&self.platform, self.secureboot)?;
        Arch::parse(&self.arch)?;
        Ok(())
    }

    /// The schematic this request describes.
    pub fn schematic(&self) -> Schematic {
        Schematic::with_extensions_and_args(&self.extensions, &self.extra_kernel_args)
    }

    /// Validate, then compute the schematic ID and artifact references.
    pub fn resolve(&self) -> Result<ImageArtifacts, ImageError> {
        self.validate()?;
        let platform = validate_platform(&self.platform, self.secureboot)?;
        let arch = Arch::parse(&self.arch)?;
        let schematic = self.schematic();
        let schematic_yaml = schematic.canonical_yaml()?;
        let schematic_id = sha256_hex(schematic_yaml.as_bytes());
        let sb = if self.secureboot { "-secureboot" } else { "" };
        let version = &self.talos_version;
        let base = format!("https://{FACTORY_HOST}/image/{schematic_id}/{version}");
        let stem = format!("{}-{}{}", platform.name, arch, sb);
        Ok(ImageArtifacts {
            installer_image: format!(
                "{FACTORY_HOST}/{}-installer{sb}/{schematic_id}:{version}",
                platform.name
            ),
            disk_image_url: format!("{base}/{stem}{}", platform.disk_image_suffix),
            iso_url: platform.iso.then(|| format!("{base}/{stem}.iso")),
            schematic_id,
            schematic_yaml,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml_of_args(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Schematic::with_extensions_and_args(&[], &args)
            .canonical_yaml()
            .unwrap()
    }

    // --- IDs -------------------------------------------------------------

    #[test]
    fn empty_schematic_is_the_factory_default() {
        let s = Schematic::default();
        assert_eq!(s.canonical_yaml().unwrap(), "customization: {}\n");
        assert_eq!(
            s.id().unwrap(),
            "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
        );
        assert_eq!(s.id().unwrap(), DEFAULT_SCHEMATIC_ID);
    }

    #[test]
    fn factory_test_vectors() {
        // IDs from the Image Factory's own schematic tests.
        let args = Schematic::with_extensions_and_args(&[], &["noapic".into(), "nolapic".into()]);
        assert_eq!(
            args.canonical_yaml().unwrap(),
            "customization:\n    extraKernelArgs:\n        - noapic\n        - nolapic\n"
        );
        assert_eq!(
            args.id().unwrap(),
            "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c"
        );
        let meta = Schematic {
            customization: Customization {
                meta: vec![MetaValue {
                    key: 0x0a,
                    value: "foo".into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            meta.id().unwrap(),
            "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f"
        );
        let sb = Schematic {
            customization: Customization {
                secureboot: SecureBootCustomization {
                    include_well_known_certificates: true,
                },
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            sb.id().unwrap(),
            "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6"
        );
        let overlay = Schematic {
            overlay: Overlay {
                image: "siderolabs/sbc-raspberrypi".into(),
                name: "rpi_generic".into(),
            },
            ..Default::default()
        };
        assert_eq!(
            overlay.id().unwrap(),
            "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9"
        );
    }

    #[test]
    fn published_extension_schematics() {
        // Schematic IDs published alongside factory.talos.dev installer
        // references for these extension sets (the factory web UI lists the
        // chosen extensions in alphabetical order).
        let qga = Schematic::with_extensions_and_args(&["siderolabs/qemu-guest-agent".into()], &[]);
        assert_eq!(
            qga.canonical_yaml().unwrap(),
            "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n"
        );
        assert_eq!(
            qga.id().unwrap(),
            "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515"
        );
        let three = Schematic::with_extensions_and_args(
            &[
                "siderolabs/iscsi-tools".into(),
                "siderolabs/qemu-guest-agent".into(),
                "siderolabs/util-linux-tools".into(),
            ],
            &[],
        );
        assert_eq!(
            three.id().unwrap(),
            "88d1f7a5c4f1d3aba7df787c448c1d3d008ed29cfb34af53fa0df4336a56040b"
        );
        // Order matters: lists are not sorted.
        let reordered = Schematic::with_extensions_and_args(
            &[
                "siderolabs/qemu-guest-agent".into(),
                "siderolabs/iscsi-tools".into(),
                "siderolabs/util-linux-tools".into(),
            ],
            &[],
        );
        assert_ne!(reordered.id().unwrap(), three.id().unwrap());
    }

    #[test]
    fn field_order_and_omission() {
        // Expected bytes produced by go-yaml v3 for the factory struct.
        let s = Schematic {
            owner: "me".into(),
            overlay: Overlay::default(),
            customization: Customization {
                extra_kernel_args: vec!["a".into()],
                meta: vec![
                    MetaValue {
                        key: 0,
                        value: "".into(),
                    },
                    MetaValue {
                        key: 255,
                        value: "1".into(),
                    },
                ],
                system_extensions: SystemExtensions {
                    official_extensions: vec!["siderolabs/qemu-guest-agent".into()],
                },
                secureboot: SecureBootCustomization {
                    include_well_known_certificates: true,
                },
            },
        };
        assert_eq!(
            s.canonical_yaml().unwrap(),
            "owner: me\ncustomization:\n    extraKernelArgs:\n        - a\n    meta:\n        - key: 0\n          value: \"\"\n        - key: 255\n          value: \"1\"\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n    secureboot:\n        includeWellKnownCertificates: true\n"
        );
        assert_eq!(
            s.id().unwrap(),
            "1ebb18edd62da02e389954005e6b4276f1a0811de5993f281e7a6d2c0fe79533"
        );
    }

    // --- scalar styles (expected output produced by go-yaml v3) ----------

    #[test]
    fn scalar_styles_match_go_yaml() {
        let cases: &[(&str, &str)] = &[
            ("quiet", "quiet"),
            ("console=ttyS0,115200", "console=ttyS0,115200"),
            ("net.ifnames=0", "net.ifnames=0"),
            ("vga=791", "vga=791"),
            ("1", "\"1\""),
            ("0x1F", "\"0x1F\""),
            ("1e5", "\"1e5\""),
            ("1.5", "\"1.5\""),
            (".5", "\".5\""),
            (".inf", "\".inf\""),
            ("+.inf", "\"+.inf\""),
            ("-.Inf", "\"-.Inf\""),
            (".nan", "\".nan\""),
            ("true", "\"true\""),
            ("True", "\"True\""),
            ("TRUE", "\"TRUE\""),
            ("tRue", "tRue"),
            ("false", "\"false\""),
            ("null", "\"null\""),
            ("Null", "\"Null\""),
            ("~", "\"~\""),
            ("", "\"\""),
            ("y", "\"y\""),
            ("Y", "\"Y\""),
            ("yes", "\"yes\""),
            ("no", "\"no\""),
            ("on", "\"on\""),
            ("off", "\"off\""),
            ("On", "\"On\""),
            ("OFF", "\"OFF\""),
            ("n", "\"n\""),
            ("<<", "<<"),
            ("2001-12-14", "\"2001-12-14\""),
            (
                "2001-12-14T21:59:43.10-05:00",
                "\"2001-12-14T21:59:43.10-05:00\"",
            ),
            ("1:20", "\"1:20\""),
            ("190:20:30.15", "\"190:20:30.15\""),
            ("-foo", "-foo"),
            ("-", "'-'"),
            ("--", "--"),
            ("foo:", "'foo:'"),
            ("foo:bar", "foo:bar"),
            (":foo", ":foo"),
            ("?foo", "?foo"),
            ("?", "'?'"),
            ("#foo", "'#foo'"),
            ("foo#bar", "foo#bar"),
            ("&a", "'&a'"),
            ("*a", "'*a'"),
            ("!a", "'!a'"),
            ("|a", "'|a'"),
            (">a", "'>a'"),
            ("%a", "'%a'"),
            ("@a", "'@a'"),
            ("`a", "'`a'"),
            ("'a", "'''a'"),
            ("\"a", "'\"a'"),
            ("a'b", "a'b"),
            ("a\"b", "a\"b"),
            ("[a", "'[a'"),
            ("a[b", "a[b"),
            ("{a", "'{a'"),
            ("a}", "a}"),
            (",a", "',a'"),
            ("a,b", "a,b"),
            ("---", "'---'"),
            ("...a", "'...a'"),
            ("---a", "'---a'"),
            ("a b", "a b"),
            (" a", "' a'"),
            ("a ", "'a '"),
            ("a\tb", "\"a\\tb\""),
            ("a\\b", "a\\b"),
            ("é", "é"),
            ("a\u{a0}b", "a\u{a0}b"),
            ("\u{1}", "\"\\x01\""),
            ("\u{7f}", "\"\\x7F\""),
            ("0o17", "\"0o17\""),
            ("017", "\"017\""),
            ("0b101", "\"0b101\""),
            ("-0b101", "\"-0b101\""),
            ("+1", "\"+1\""),
            ("-1", "\"-1\""),
            ("1_000", "\"1_000\""),
            ("99999999999999999999", "\"99999999999999999999\""),
            ("1e", "1e"),
            ("0x", "0x"),
            ("12a", "12a"),
            ("infinity", "infinity"),
            (".Infinity", ".Infinity"),
            ("NaN", "NaN"),
            ("-.5e3", "\"-.5e3\""),
            ("+", "+"),
            (".", "."),
            ("=a", "=a"),
            ("a=b=c", "a=b=c"),
            ("init=/bin/sh", "init=/bin/sh"),
            ("talos.platform=metal", "talos.platform=metal"),
            ("a: b", "'a: b'"),
            ("\u{fffe}a", "\"\\uFFFEa\""),
            ("\u{1F600}a", "\"\\U0001F600a\""),
            ("\u{80}a", "\"\\x80a\""),
            ("\u{c0}", "\u{c0}"),
            ("\u{d7ff}", "\u{d7ff}"),
            ("\u{e000}", "\u{e000}"),
            ("\u{ffef}", "\u{ffef}"),
        ];
        for (input, expected) in cases {
            let got = yaml_of_args(&[input]);
            let want = format!("customization:\n    extraKernelArgs:\n        - {expected}\n");
            assert_eq!(got, want, "input {input:?}");
        }
    }

    fn meta_yaml(value: &str) -> Result<String, SchematicError> {
        Schematic {
            customization: Customization {
                meta: vec![MetaValue {
                    key: 10,
                    value: value.into(),
                }],
                ..Default::default()
            },
            ..Default::default()
        }
        .canonical_yaml()
    }

    #[test]
    fn meta_values_match_go_yaml() {
        let prefix = "customization:\n    meta:\n        - key: 10\n          value: ";
        let cases: &[(&str, &str, &str)] = &[
            (
                "\u{0}",
                "\"\\0\"\n",
                "564f2a98cd991ea501afe8df5dc354470b3fa9fb75f5278259af8443c6b03f77",
            ),
            (
                "a\rb",
                "\"a\\rb\"\n",
                "f8ac016328bcf4948c0fb00d7aadd1ff92b0c1877af0b06769daba3035eb30de",
            ),
            (
                "\u{1b}",
                "\"\\e\"\n",
                "c6a33c20f34ed1f1a402c34a32d6465f434bed4094ca58fe724a0b5d5aa7687b",
            ),
            (
                "\u{7}",
                "\"\\a\"\n",
                "032477c9754851f6b2920e348b1922bab4d01a6bb3822512a7627b8e47a8789d",
            ),
            (
                "\u{8}",
                "\"\\b\"\n",
                "b2dbddc80cc3ccc1ca8b495dd441666222888cb5180075265261a2ea18ab85b4",
            ),
            (
                "\u{b}",
                "\"\\v\"\n",
                "7a25731db9d4c3d264b845e4d826d47c530442ee659b8ccbe12f77bf8e067790",
            ),
            (
                "\u{c}",
                "\"\\f\"\n",
                "e12cf7ed8e852ece36e52f98f98d639a168206e6fbf1b4a994560d381cfb001e",
            ),
            (
                "a\u{9f}b",
                "\"a\\x9Fb\"\n",
                "7cd617241ea79fe138884938b99e5f5eff86dc20238b6be9e648687609165501",
            ),
            (
                "\u{fffe}",
                "\"\\uFFFE\"\n",
                "15a9b4fc1fc8e21ec2efe120b77cc9ef8e6aec26ae8b7db02872a084bac67f71",
            ),
            (
                "a\nb",
                "|-\n            a\n            b\n",
                "5c20630662468132867ad2841f3f42c0340aaa27b0e96d6e62e8917c69ecbee3",
            ),
            (
                "a\nb\n",
                "|\n            a\n            b\n",
                "ef7672d96001eb6b55ad4cf59c2ddba7a89ca156950f60d570bdf545003fbffe",
            ),
            (
                "a\nb\n\n",
                "|+\n            a\n            b\n\n",
                "5d30b67b7b347209fdbf3196833b9332e8115951b7afd618192721ec8b6bba8c",
            ),
            (
                "a \nb",
                "\"a \\nb\"\n",
                "7335796d8ae650f5918ad1392153e7ba882077978a8a911e2e7872c0b6e63394",
            ),
            (
                "a\n",
                "|\n            a\n",
                "aa083d9164d47132e75b3a0afad0818b45f7f3ca936e10609739348a962b1cbb",
            ),
            (
                "a\n b",
                "|-\n            a\n             b\n",
                "8ed874fefd970cca3a73c3cd4fe194ecfed49ec545cd822a18f720a84e14c896",
            ),
            (
                "{}",
                "'{}'\n",
                "de3de71abf5a50551986885ddf49ce25e86459a502da360255704ecffdec2e35",
            ),
            (
                "a\u{e9} b",
                "a\u{e9} b\n",
                "4ccf8c3be366d59570d019c3f3aeafe72b8180cc2d9230540e3aad87ec14a8fe",
            ),
            (
                "a\n\nb",
                "|-\n            a\n\n            b\n",
                "2bf1c7437e2b9845e244b158e1b5e0805692f4cf02d44c48115889a8516410cf",
            ),
            (
                "a\n\nb\n",
                "|\n            a\n\n            b\n",
                "6165ac1b3db773547cf7c85ad65397618e559e707c8338b425d4a492b0cdff68",
            ),
            (
                "a\nb\n\n\n",
                "|+\n            a\n            b\n\n\n",
                "08b5f64c80fc6f2adee27345d11aa238938a99662b4276b5f08752dcccbd150e",
            ),
            (
                "addresses:\n  - 10.0.0.2/24\nroutes: []\n",
                "|\n            addresses:\n              - 10.0.0.2/24\n            routes: []\n",
                "52b2e91035b4d0c9d33679adf61160c3f62a914274bc7b403404e2f3d7f92c94",
            ),
            (
                "a\n\n",
                "|+\n            a\n\n",
                "5701550e81ee34c11be4af0f03d30228a9a07bdddc0fe41f478561be50e8080a",
            ),
        ];
        for (value, rendered, id) in cases {
            let y = meta_yaml(value).unwrap();
            assert_eq!(y, format!("{prefix}{rendered}"), "value {value:?}");
            assert_eq!(&sha256_hex(y.as_bytes()), id, "value {value:?}");
        }
        let long = format!("{} {}", "x".repeat(100), "y".repeat(100));
        let y = meta_yaml(&long).unwrap();
        assert_eq!(
            sha256_hex(y.as_bytes()),
            "8ce892773192fad5cd94087108bcfd6ec277fe52bf1b604f85d927757ce0654f",
            "long strings are not folded"
        );
    }

    #[test]
    fn multiline_in_top_level_fields() {
        let s = Schematic {
            owner: "a\nb\n".into(),
            overlay: Overlay {
                image: "x\ny".into(),
                name: "n".into(),
            },
            ..Default::default()
        };
        assert_eq!(
            s.canonical_yaml().unwrap(),
            "owner: |\n    a\n    b\noverlay:\n    image: |-\n        x\n        y\n    name: \"n\"\ncustomization: {}\n"
        );
        assert_eq!(
            s.id().unwrap(),
            "27147c25210723925d8b2029634b699f73e20ba8f6e0a71c76795349f69fc4f7"
        );
    }

    #[test]
    fn unsupported_strings_are_refused_not_guessed() {
        for v in ["a\u{85}b", "a\u{2028}b", "\u{feff}a", " a\nb", "\na"] {
            assert!(
                matches!(meta_yaml(v), Err(SchematicError::UnsupportedString { .. })),
                "{v:?}"
            );
        }
        let s = Schematic::with_extensions_and_args(&[], &["a\nb".into()]);
        match s.canonical_yaml() {
            Err(SchematicError::UnsupportedString { path, .. }) => {
                assert_eq!(path, "customization.extraKernelArgs[0]")
            }
            other => panic!("{other:?}"),
        }
    }

    // --- parsing ---------------------------------------------------------

    #[test]
    fn parse_equivalent_inputs_give_the_same_id() {
        // Inputs from the factory's own unmarshal tests.
        for (text, id) in [
            ("{}", DEFAULT_SCHEMATIC_ID),
            ("customization: {}", DEFAULT_SCHEMATIC_ID),
            ("customization: {\"extraKernelArgs\": []}", DEFAULT_SCHEMATIC_ID),
            ("null", DEFAULT_SCHEMATIC_ID),
            (
                "{\"customization\": {\"extraKernelArgs\": [\"noapic\", \"nolapic\"]}}",
                "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
            ),
            (
                "{\"customization\": {\"extraKernelArgs\": [\"noapic\", \"nolapic\"], \"systemExtensions\": {}}}",
                "9cba8e32753f91a16c1837ab8abf356af021706ef284aef07380780177d9a06c",
            ),
            (
                "{\"customization\": {\"meta\": [{\"key\": 10, \"value\": \"foo\"}], \"extraKernelArgs\": [], \"systemExtensions\": {}}}",
                "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
            ),
            (
                "customization:\n  meta:\n    - key: 0xa\n      value: foo\n",
                "d308a2a5ee2277bed5fbaa104fcbc8d59122abfa737df987a95b4ca763459a7f",
            ),
            (
                "{\"overlay\": {\"name\": \"rpi_generic\", \"image\": \"siderolabs/sbc-raspberrypi\"}}",
                "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
            ),
            (
                "{\"overlay\": {\"name\": \"rpi_generic\", \"image\": \"siderolabs/sbc-raspberrypi\"},\"customization\":{}}",
                "ee21ef4a5ef808a9b7484cc0dda0f25075021691c8c09a276591eedb638ea1f9",
            ),
            (
                "{\"customization\":{\"secureboot\": {\"includeWellKnownCertificates\": true}}}",
                "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
            ),
            (
                "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/qemu-guest-agent\n",
                "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515",
            ),
        ] {
            assert_eq!(schematic_id_from_yaml(text).unwrap(), id, "{text}");
        }
    }

    #[test]
    fn parse_refuses_bad_input() {
        assert_eq!(schematic_id_from_yaml("  \n"), Err(SchematicError::Empty));
        assert!(matches!(
            schematic_id_from_yaml("customization: ["),
            Err(SchematicError::Parse(_))
        ));
        assert_eq!(
            schematic_id_from_yaml("customization:\n  extraKernelArg: [a]"),
            Err(SchematicError::UnknownField {
                path: "customization.extraKernelArg".into()
            })
        );
        assert_eq!(
            schematic_id_from_yaml("foo: 1"),
            Err(SchematicError::UnknownField { path: "foo".into() })
        );
        assert_eq!(
            schematic_id_from_yaml("customization:\n  meta:\n    - key: 256\n      value: x"),
            Err(SchematicError::MetaKeyOutOfRange {
                path: "customization.meta[0].key".into()
            })
        );
        assert!(matches!(
            schematic_id_from_yaml("customization:\n  extraKernelArgs: [1]"),
            Err(SchematicError::WrongType { ref path, .. }) if path == "customization.extraKernelArgs[0]"
        ));
        assert!(matches!(
            schematic_id_from_yaml("customization: 3"),
            Err(SchematicError::WrongType { ref path, .. }) if path == "customization"
        ));
        assert_eq!(
            schematic_id_from_yaml("overlay:\n  image: x\n  name: y\n  options:\n    a: 1"),
            Err(SchematicError::UnsupportedOverlayOptions)
        );
    }

    // --- validation ------------------------------------------------------

    #[test]
    fn talos_versions() {
        for ok in [
            "v1.12.4",
            "v1.0.0",
            "v1.13.0-beta.1",
            "v1.12.0-alpha.0",
            "v10.20.30",
        ] {
            assert!(validate_talos_version(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1.12.4",
            "v1.12",
            "v1.12.4.5",
            "v01.12.4",
            "vx.y.z",
            "v1.12.4+build",
            "v1.12.4-",
            "v1.12.4-beta..1",
            "v1.12.4-01",
            "latest",
            " v1.12.4",
            "v1.12.4 ",
            "v1.-1.0",
            "V1.12.4",
        ] {
            assert!(
                matches!(
                    validate_talos_version(bad),
                    Err(ImageError::InvalidTalosVersion { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn extension_names() {
        assert!(validate_extension_name("siderolabs/qemu-guest-agent").is_ok());
        assert!(validate_extension_name("siderolabs/iscsi-tools").is_ok());
        match validate_extension_name("qemu-guest-agent") {
            Err(ImageError::InvalidExtensionName { hint, .. }) => {
                assert!(hint.contains("siderolabs/qemu-guest-agent"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            validate_extension_name("siderolabs/qemu-guest-agnet"),
            Err(ImageError::UnknownExtension { .. })
        ));
        assert!(matches!(
            validate_extension_name("ghcr.io/acme/thing"),
            Err(ImageError::InvalidExtensionName { .. })
        ));
        let dup = vec![
            "siderolabs/zfs".to_string(),
            "siderolabs/drbd".to_string(),
            "siderolabs/zfs".to_string(),
        ];
        assert_eq!(
            validate_extensions(&dup),
            Err((
                2,
                ImageError::DuplicateExtension {
                    name: "siderolabs/zfs".into()
                }
            ))
        );
        // The curated list itself is well-formed and free of duplicates.
        for (i, n) in OFFICIAL_EXTENSIONS.iter().enumerate() {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{n}"
            );
            assert!(!OFFICIAL_EXTENSIONS[..i].contains(n), "duplicate {n}");
        }
    }

    #[test]
    fn kernel_args() {
        for ok in [
            "quiet",
            "console=ttyS0,115200",
            "net.ifnames=0",
            "talos.dashboard.disabled=1",
            "i915.enable_guc=3",
            "-console",
            "init_on_alloc=1",
            "ip=10.0.0.2::10.0.0.1:255.255.255.0::eth0:off",
        ] {
            assert!(validate_kernel_arg(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "a b", "a\tb", "a\nb", "=x", "a=\"b\"", "a='b'", "k\u{1}", "ké=1", ".a", "a/b=1",
            "a=b c",
        ] {
            assert!(
                matches!(
                    validate_kernel_arg(bad),
                    Err(ImageError::InvalidKernelArg { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn platforms_and_arches() {
        assert_eq!(Platform::parse("nocloud").unwrap().name, "nocloud");
        assert!(matches!(
            Platform::parse("proxmox"),
            Err(ImageError::UnsupportedPlatform { .. })
        ));
        assert!(matches!(
            validate_platform("aws", true),
            Err(ImageError::SecureBootUnsupported { .. })
        ));
        assert_eq!(Arch::parse("arm64").unwrap(), Arch::Arm64);
        assert!(matches!(
            Arch::parse("x86_64"),
            Err(ImageError::UnsupportedArch { .. })
        ));
    }

    // --- URLs ------------------------------------------------------------

    #[test]
    fn nocloud_urls() {
        let req = ImageRequest {
            talos_version: "v1.12.4".into(),
            extensions: vec!["siderolabs/qemu-guest-agent".into()],
            ..Default::default()
        };
        let a = req.resolve().unwrap();
        let id = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";
        assert_eq!(a.schematic_id, id);
        assert_eq!(
            a.installer_image,
            format!("factory.talos.dev/nocloud-installer/{id}:v1.12.4")
        );
        assert_eq!(
            a.disk_image_url,
            format!("https://factory.talos.dev/image/{id}/v1.12.4/nocloud-amd64.qcow2")
        );
        assert_eq!(
            a.iso_url.as_deref(),
            Some(
                format!("https://factory.talos.dev/image/{id}/v1.12.4/nocloud-amd64.iso").as_str()
            )
        );
    }

    #[test]
    fn secureboot_and_other_platforms() {
        let req = ImageRequest {
            talos_version: "v1.11.5".into(),
            extensions: vec!["siderolabs/qemu-guest-agent".into()],
            secureboot: true,
            ..Default::default()
        };
        let a = req.resolve().unwrap();
        let id = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";
        // SecureBoot changes URLs only, never the schematic.
        assert_eq!(a.schematic_id, id);
        assert_eq!(
            a.installer_image,
            format!("factory.talos.dev/nocloud-installer-secureboot/{id}:v1.11.5")
        );
        assert_eq!(
            a.iso_url.unwrap(),
            format!("https://factory.talos.dev/image/{id}/v1.11.5/nocloud-amd64-secureboot.iso")
        );
        assert_eq!(
            a.disk_image_url,
            format!("https://factory.talos.dev/image/{id}/v1.11.5/nocloud-amd64-secureboot.qcow2")
        );

        let metal = ImageRequest {
            talos_version: "v1.7.5".into(),
            platform: "metal".into(),
            arch: "arm64".into(),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            metal.disk_image_url,
            format!(
                "https://factory.talos.dev/image/{DEFAULT_SCHEMATIC_ID}/v1.7.5/metal-arm64.raw.xz"
            )
        );
        assert_eq!(
            metal.installer_image,
            format!("factory.talos.dev/metal-installer/{DEFAULT_SCHEMATIC_ID}:v1.7.5")
        );
        let aws = ImageRequest {
            talos_version: "v1.7.5".into(),
            platform: "aws".into(),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(aws.iso_url, None);
        assert_eq!(
            aws.installer_image,
            format!("factory.talos.dev/aws-installer/{DEFAULT_SCHEMATIC_ID}:v1.7.5")
        );
    }

    #[test]
    fn resolve_refuses_invalid_requests() {
        let base = ImageRequest {
            talos_version: "v1.12.4".into(),
            ..Default::default()
        };
        let bad_version = ImageRequest {
            talos_version: "1.12".into(),
            ..base.clone()
        };
        assert!(matches!(
            bad_version.resolve(),
            Err(ImageError::InvalidTalosVersion { .. })
        ));
        let bad_ext = ImageRequest {
            extensions: vec!["siderolabs/nope".into()],
            ..base.clone()
        };
        assert!(matches!(
            bad_ext.resolve(),
            Err(ImageError::UnknownExtension { .. })
        ));
        let bad_arg = ImageRequest {
            extra_kernel_args: vec!["a b".into()],
            ..base.clone()
        };
        assert!(matches!(
            bad_arg.resolve(),
            Err(ImageError::InvalidKernelArg { .. })
        ));
    }
}
