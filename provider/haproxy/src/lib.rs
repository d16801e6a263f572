//! waddle-haproxy: the domain library behind `waddle_sni_proxy`.
//!
//! * [`ProxySpec`] / [`RouteSpec`]: the typed routing configuration (see [`spec`]).
//! * [`validate()`]: normalization and validation with attribute paths ([`ValidationErrors`]),
//!   for plan-time diagnostics; hostname semantics in [`hostname`].
//! * [`render()`]: `haproxy.cfg`, the exact and wildcard map files and a `config_hash`
//!   ([`Rendered`]); lookup design in [`render`](mod@render).
//! * [`payload`]: what the VM's NoCloud seed adds for HAProxy (package, files, boot command);
//!   the generic seed is `waddle_proxmox::cloud_config`.
//! * [`guest`]: the day-2 steps on the VM as data (in-place update, readiness, recovery),
//!   which the provider runs through the guest agent.
//! * [`check`]: runs the real `haproxy -c` on rendered files (when the binary is present).
//!
//! # How `waddle_sni_proxy` uses it
//!
//! * **Plan / validate**: build a [`ProxySpec`] from the configuration ([`Timeouts::parse`]
//!   for `proxy_timeouts`) and call [`validate()`]; turn each [`ValidationError`] into a
//!   diagnostic at its [`AttrPath`].
//! * **Create**: [`render_versioned`] (map names carry their content hash), then
//!   [`payload`], joined with the VM's cloud config into the NoCloud seed ISO.
//!   Computed attributes: `haproxy_cfg`, `exact_map`, `wildcard_map`, `config_hash`.
//! * **Update routes in place** (guest agent): [`guest::update`] — write both maps to their
//!   new paths, the config to `<config>.new` and the hash to `<marker>.new`, `haproxy -c` the
//!   new config (a refusal leaves the old config running; HAProxy's message is the
//!   diagnostic), swap and reload, remove [`guest::stale_maps`]. [`update_script`] is the
//!   same as one shell script.
//! * **Read / drift**: read the live config, [`live_map_paths`] to find the maps, read them,
//!   and compare [`config_hash`] with the state (or read
//!   [`cloudinit::HASH_MARKER_PATH`] for the last applied hash).
//!
//! This crate depends on no other waddle crate.

pub mod check;
pub mod cloudinit;
pub mod error;
pub mod guest;
pub mod hostname;
pub mod render;
pub mod spec;
pub mod validate;

pub use check::{haproxy_check, CheckError, CheckOutput};
pub use cloudinit::{payload, Payload, PayloadFile};
pub use error::{AttrPath, ErrorKind, PathStep, RenderError, ValidationError, ValidationErrors};
pub use hostname::{parse_hostname, HostPattern};
pub use render::{
    config_hash, live_map_paths, render, render_validated, render_versioned, update_script,
    Rendered, RenderedFile,
};
pub use spec::{
    format_duration, parse_duration, seed_layout, FilePaths, ListenSpec, LogTarget, ProcessSpec,
    ProxySpec, RouteSpec, Timeouts, DEFAULT_MAXCONN,
};
pub use validate::{
    parse_backend, validate, validate_addressing, Addressing, Backend, NormalizedRoute,
    ValidatedSpec,
};
