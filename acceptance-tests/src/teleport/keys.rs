//! The key set of `teleport.yaml` (`version: v3`) as Teleport 18 parses it: Teleport reads its
//! file with a strict YAML decode (`yaml.UnmarshalStrict` into `config.FileConfig`), so a key
//! it does not know anywhere stops it at start.
//!
//! Source: Teleport's configuration reference
//! (<https://goteleport.com/docs/reference/deployment/config/>, Teleport 18) and the struct
//! tags of `lib/config/fileconf.go` in gravitational/teleport (`FileConfig`, `Global`, `Log`,
//! `Auth`, `AuthenticationConfig`, `Proxy`, `ACME`, `SSH`, `Kube`, `Apps`, `App`). The sets
//! below are the sections waddle can produce plus their common siblings; a key missing here
//! is refused, which is never kinder than Teleport (it can only be stricter).

/// What a YAML node may hold.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A mapping with exactly these keys (each with its own shape).
    Keys(&'static [(&'static str, Shape)]),
    /// A list whose elements have this shape.
    List(&'static Shape),
    /// A mapping with any keys (labels) whose values are scalars.
    Labels,
    /// A scalar (string, number, bool).
    Scalar,
    /// A list of scalars, or one scalar.
    Scalars,
    /// Anything (sections waddle never writes: checked no deeper).
    Any,
}

use Shape::*;

const LOG_FORMAT: Shape = Keys(&[("output", Scalar), ("extra_fields", Scalars)]);
const LOG: Shape = Keys(&[
    ("output", Scalar),
    ("severity", Scalar),
    ("format", LOG_FORMAT),
]);
const JOIN_PARAMS: Shape = Keys(&[("token_name", Scalar), ("method", Scalar), ("azure", Any)]);

const GLOBAL: Shape = Keys(&[
    ("nodename", Scalar),
    ("data_dir", Scalar),
    ("pid_file", Scalar),
    ("auth_token", Scalar),
    ("join_params", JOIN_PARAMS),
    ("auth_server", Scalar),
    ("auth_servers", Scalars),
    ("proxy_server", Scalar),
    ("limits", Any),
    ("log", LOG),
    ("storage", Any),
    ("advertise_ip", Scalar),
    ("cache", Any),
    ("ca_pin", Scalars),
    ("diag_addr", Scalar),
    ("ciphers", Scalars),
    ("kex_algorithms", Scalars),
    ("mac_algorithms", Scalars),
    ("ca_signature_algo", Scalar),
]);

const AUTHENTICATION: Shape = Keys(&[
    ("type", Scalar),
    ("second_factor", Scalar),
    ("second_factors", Scalars),
    ("connector_name", Scalar),
    ("local_auth", Scalar),
    ("webauthn", Any),
    ("u2f", Any),
    ("require_session_mfa", Scalar),
    ("lock_after", Scalar),
    ("allow_passwordless", Scalar),
    ("allow_headless", Scalar),
    ("device_trust", Any),
    ("default_session_ttl", Scalar),
    ("message_of_the_day", Scalar),
    ("disconnect_expired_cert", Scalar),
    ("hardware_key", Any),
]);

const AUTH: Shape = Keys(&[
    ("enabled", Scalar),
    ("listen_addr", Scalar),
    ("public_addr", Scalars),
    ("cluster_name", Scalar),
    ("authentication", AUTHENTICATION),
    ("proxy_listener_mode", Scalar),
    ("tokens", Scalars),
    ("license_file", Scalar),
    ("session_recording", Scalar),
    ("proxy_checks_host_keys", Scalar),
    ("client_idle_timeout", Scalar),
    ("disconnect_expired_cert", Scalar),
    ("keep_alive_interval", Scalar),
    ("keep_alive_count_max", Scalar),
    ("routing_strategy", Scalar),
    ("tunnel_strategy", Any),
    ("message_of_the_day", Scalar),
    ("web_idle_timeout", Scalar),
    ("ca_key_params", Any),
    ("case_insensitive_routing", Scalar),
]);

const ACME: Shape = Keys(&[("enabled", Scalar), ("email", Scalar), ("uri", Scalar)]);

const PROXY: Shape = Keys(&[
    ("enabled", Scalar),
    ("listen_addr", Scalar),
    ("web_listen_addr", Scalar),
    ("tunnel_listen_addr", Scalar),
    ("peer_listen_addr", Scalar),
    ("peer_public_addr", Scalar),
    ("public_addr", Scalars),
    ("ssh_public_addr", Scalars),
    ("tunnel_public_addr", Scalars),
    ("kube_listen_addr", Scalar),
    ("kube_public_addr", Scalars),
    ("kubernetes", Any),
    ("postgres_listen_addr", Scalar),
    ("postgres_public_addr", Scalars),
    ("mysql_listen_addr", Scalar),
    ("mysql_public_addr", Scalars),
    ("mongo_listen_addr", Scalar),
    ("mongo_public_addr", Scalars),
    ("https_keypairs", Any),
    ("https_keypairs_reload_interval", Scalar),
    ("acme", ACME),
    ("key_file", Scalar),
    ("cert_file", Scalar),
    ("proxy_protocol", Scalar),
    ("proxy_protocol_allow_downgrade", Scalar),
    ("trust_x_forwarded_for", Scalar),
    ("idp", Any),
    ("ui", Any),
    ("mysql_server_version", Scalar),
]);

const SSH: Shape = Keys(&[
    ("enabled", Scalar),
    ("listen_addr", Scalar),
    ("public_addr", Scalars),
    ("labels", Labels),
    ("commands", Any),
    ("permit_user_env", Scalar),
    ("pam", Any),
    ("enhanced_recording", Any),
    ("x11", Any),
    ("disable_create_host_user", Scalar),
    ("port_forwarding", Scalar),
    ("ssh_file_copy", Scalar),
]);

const KUBE: Shape = Keys(&[
    ("enabled", Scalar),
    ("listen_addr", Scalar),
    ("public_addr", Scalars),
    ("kubeconfig_file", Scalar),
    ("kube_cluster_name", Scalar),
    ("labels", Labels),
    ("resources", Any),
]);

const APP: Shape = Keys(&[
    ("name", Scalar),
    ("description", Scalar),
    ("uri", Scalar),
    ("public_addr", Scalar),
    ("insecure_skip_verify", Scalar),
    ("labels", Labels),
    ("commands", Any),
    ("rewrite", Any),
    ("aws", Any),
    ("cloud", Scalar),
    ("required_apps", Scalars),
    ("cors", Any),
    ("tcp_ports", Any),
    ("use_any_proxy_public_addr", Scalar),
]);

const APPS: Shape = Keys(&[
    ("enabled", Scalar),
    ("debug_app", Scalar),
    ("apps", List(&APP)),
    ("resources", Any),
]);

/// The whole file.
pub const FILE: Shape = Keys(&[
    ("version", Scalar),
    ("teleport", GLOBAL),
    ("auth_service", AUTH),
    ("ssh_service", SSH),
    ("proxy_service", PROXY),
    ("kubernetes_service", KUBE),
    ("app_service", APPS),
    ("db_service", Any),
    ("metrics_service", Any),
    ("windows_desktop_service", Any),
    ("tracing_service", Any),
    ("discovery_service", Any),
    ("okta_service", Any),
    ("jamf_service", Any),
    ("debug_service", Any),
]);
