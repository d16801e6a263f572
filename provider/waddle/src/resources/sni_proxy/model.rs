//! The state of `waddle_sni_proxy` (one field per attribute; see `assert_roundtrip` in the
//! tests) and what is derived from it: the routing spec, the rendering and the seed payload.

use serde::{Deserialize, Serialize};
use waddle_haproxy::{ListenSpec, ProxySpec, Rendered, RouteSpec, Timeouts};
use waddle_proxmox::cloud_config::CloudConfig;

use crate::resources::timeouts::TimeoutsModel;
use crate::resources::vm;
use crate::resources::vm::resource::lenient;

/// `public_nic`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PublicNic {
    pub bridge: String,
    pub cidr: String,
    pub gateway: Option<String>,
}

/// `private_nic`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PrivateNic {
    pub bridge: String,
    pub cidr: String,
}

/// One element of `routes`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Route {
    #[serde(default, deserialize_with = "lenient")]
    pub hostnames: Vec<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub backend: String,
    pub proxy_protocol: Option<bool>,
    pub check: Option<bool>,
}

/// `listen`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Listen {
    pub https: Option<u32>,
    pub http: Option<u32>,
}

/// `proxy_timeouts`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct ProxyTimeouts {
    pub connect: Option<String>,
    pub client: Option<String>,
    pub server: Option<String>,
    pub tunnel: Option<String>,
    pub inspect: Option<String>,
}

/// The resource state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SniProxyState {
    pub id: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub storage: Option<String>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u32>,
    pub image_url: Option<String>,
    pub image_storage: Option<String>,
    pub public_nic: Option<PublicNic>,
    pub private_nic: Option<PrivateNic>,
    pub dns_servers: Option<Vec<String>>,
    pub admin_user: Option<String>,
    pub ssh_authorized_keys: Option<Vec<String>>,
    pub routes: Option<Vec<Route>>,
    pub http_backend: Option<String>,
    pub listen: Option<Listen>,
    pub maxconn: Option<u32>,
    pub proxy_timeouts: Option<ProxyTimeouts>,
    pub timeouts: Option<TimeoutsModel>,
    pub haproxy_cfg: Option<String>,
    pub exact_map: Option<String>,
    pub wildcard_map: Option<String>,
    pub config_hash: Option<String>,
    pub public_address: Option<String>,
    pub private_address: Option<String>,
    pub seed_iso: Option<String>,
}

/// Why a state's routing cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("port {0} out of range")]
    Port(u32),
    #[error(transparent)]
    Timeouts(#[from] waddle_haproxy::ValidationErrors),
    #[error(transparent)]
    Render(#[from] waddle_haproxy::RenderError),
}

impl SniProxyState {
    pub(super) fn routing_spec(&self) -> Result<ProxySpec, RoutingError> {
        let timeouts = match &self.proxy_timeouts {
            Some(t) => Some(t.parse()?),
            None => None,
        };
        spec_of(
            self.routes.as_deref().unwrap_or_default(),
            self.http_backend.clone(),
            self.listen.as_ref(),
            self.maxconn,
            timeouts,
        )
    }

    pub(super) fn rendered(&self) -> Result<Rendered, RoutingError> {
        Ok(waddle_haproxy::render_versioned(&self.routing_spec()?)?)
    }

    pub(super) fn set_rendered(&mut self, r: &Rendered) {
        self.haproxy_cfg = Some(r.haproxy_cfg.clone());
        self.exact_map = Some(r.exact_map.clone());
        self.wildcard_map = Some(r.wildcard_map.clone());
        self.config_hash = Some(r.config_hash.clone());
    }
}

impl ProxyTimeouts {
    /// The timeouts, defaults for what is unset.
    pub(super) fn parse(&self) -> Result<Timeouts, waddle_haproxy::ValidationErrors> {
        Timeouts::parse_or_default(
            self.connect.as_deref(),
            self.client.as_deref(),
            self.server.as_deref(),
            self.tunnel.as_deref(),
            self.inspect.as_deref(),
        )
    }
}

/// The routing spec of the routing attributes (defaults for what is unset).
pub(super) fn spec_of(
    routes: &[Route],
    http_backend: Option<String>,
    listen: Option<&Listen>,
    maxconn: Option<u32>,
    timeouts: Option<Timeouts>,
) -> Result<ProxySpec, RoutingError> {
    let d = ProxySpec::default();
    let route = |r: &Route| RouteSpec::new(&r.hostnames, &r.backend);
    Ok(ProxySpec {
        routes: (routes.iter())
            .map(|r| route(r).with_options(r.proxy_protocol, r.check))
            .collect(),
        http_backend,
        listen: match listen {
            Some(l) => ListenSpec::with_ports(l.https, l.http).map_err(RoutingError::Port)?,
            None => d.listen.clone(),
        },
        maxconn: maxconn.unwrap_or(d.maxconn),
        timeouts: timeouts.unwrap_or(d.timeouts),
        ..d
    })
}

/// A guest's cloud config with the HAProxy payload of `rendered` added.
pub fn with_payload(ci: CloudConfig, rendered: &Rendered) -> CloudConfig {
    let p = waddle_haproxy::payload(rendered);
    let files = (p.files.into_iter())
        .map(|f| vm::lifecycle::payload_file(f.path, f.content, f.owner, f.permissions));
    vm::lifecycle::with_payload(ci, p.packages, files, p.commands)
}
