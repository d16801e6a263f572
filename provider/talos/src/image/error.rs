//! Errors of schematics and image requests.

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
