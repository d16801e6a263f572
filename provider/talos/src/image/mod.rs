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
//!
//! The files: `schematic.rs` (the model and its canonical YAML), `parse.rs`
//! (a schematic read from YAML/JSON), `go_yaml/` (go-yaml's scalar emitter,
//! with its resolver in `resolve.rs`), `extensions.rs` (the official extension
//! catalogue), `validate.rs` (Talos versions, kernel arguments), `platform.rs`
//! (platforms, architectures, the artifact URLs of a request), `error.rs`.

mod error;
mod extensions;
mod go_yaml;
mod parse;
mod platform;
mod schematic;
mod validate;

pub use error::{ImageError, SchematicError};
pub use extensions::{
    validate_extension_name, validate_extensions, OFFICIAL_EXTENSIONS, OFFICIAL_EXTENSION_PREFIX,
};
pub use parse::schematic_id_from_yaml;
pub use platform::{validate_platform, Arch, ImageArtifacts, ImageRequest, Platform, PLATFORMS};
pub use schematic::{
    Customization, MetaValue, Overlay, Schematic, SecureBootCustomization, SystemExtensions,
};
pub use validate::{validate_kernel_arg, validate_talos_version};

/// Host of the official Image Factory (HTTP frontend and OCI registry).
pub const FACTORY_HOST: &str = "factory.talos.dev";

/// The schematic ID of the empty schematic (`customization: {}`), as listed by
/// the Image Factory as its well-known default schematic.
pub const DEFAULT_SCHEMATIC_ID: &str =
    "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";
