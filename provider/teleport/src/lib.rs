//! waddle-teleport: the domain library behind `waddle_teleport_node` (no Terraform types).
//!
//! * [`NodeSpec`]: the typed inputs; [`validate()`] reports every error with its attribute
//!   path ([`AttrPath`]: `apps[1].uri`, `github.teams_to_roles`); [`check_proxy_protocol`]
//!   (against the SNI proxy's routes) and [`check_upgrade`] (no major-version skip).
//! * [`render()`]: `/etc/teleport.yaml` (`version: v3`), the role documents, the drift hash;
//!   [`github_connector`] renders the connector with its secret (a [`Secret`], redacted in
//!   `Debug`), for a root-only file only.
//! * [`payload`]: what the seed adds (apt repository at the pinned version, packages,
//!   non-secret files, boot command).
//! * [`check_ping`]: `/webapi/ping` says auth type github and the connector.
//!
//! This crate depends on no other waddle crate.

pub mod cloudinit;
pub mod path;
pub mod ping;
pub mod render;
pub mod spec;
pub mod validate;

pub use cloudinit::{payload, Payload, PayloadFile};
pub use path::{AttrPath, PathStep};
pub use ping::{check_ping, PingError};
pub use render::{
    config_hash, connector_canonical, expected, github_connector, parse_live, render,
    role_canonical, roles_yaml, teleport_yaml, ConnectorDoc, HashInputs, RenderError, Rendered,
    RoleDoc,
};
pub use spec::{AppSpec, GithubSpec, NodeSpec, RoleSpec, Secret, TeamMapping, Version};
pub use validate::{
    check_proxy_protocol, check_upgrade, validate, ErrorKind, ProxyProtocolMismatch, SniRoute,
    UpgradeError, ValidationError, ValidationErrors,
};
