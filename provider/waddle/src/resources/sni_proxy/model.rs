//! The state of `waddle_sni_proxy` (one field per attribute; see `assert_roundtrip` in the
//! tests) and what is derived from it: the routing spec, the rendering and the seed payload.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use waddle_haproxy::{ProxySpec, Rendered, RouteSpec, Timeouts};
use waddle_proxmox::cloud_config::{CloudConfig, SeedFile};
use waddle_proxmox::VmConfig;

use super::{SniProxy, TIMEOUTS};
use crate::resources::timeouts::{Op, TimeoutsModel};
use crate::resources::vm;

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
    pub hostnames: Vec<String>,
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
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
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
    /// The deadline of `op` (`timeouts`, else [`TIMEOUTS`]).
    pub fn timeout(&self, op: Op) -> Duration {
        TimeoutsModel::get(self.timeouts.as_ref(), op, &TIMEOUTS)
    }

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
        let d = Timeouts::default();
        let g = |x: &Option<String>, def: Duration| {
            x.clone()
                .unwrap_or_else(|| waddle_haproxy::format_duration(def))
        };
        Timeouts::parse(
            &g(&self.connect, d.connect),
            &g(&self.client, d.client),
            &g(&self.server, d.server),
            &g(&self.tunnel, d.tunnel),
            &g(&self.inspect, d.inspect),
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
    let mut spec = ProxySpec::default();
    for r in routes {
        spec.routes.push(RouteSpec {
            hostnames: r.hostnames.clone(),
            backend: r.backend.clone(),
            proxy_protocol: r.proxy_protocol.unwrap_or(false),
            check: r.check.unwrap_or(true),
        });
    }
    spec.http_backend = http_backend;
    if let Some(l) = listen {
        let port = |p: Option<u32>, d: u16| {
            p.map(|x| u16::try_from(x).map_err(|_| RoutingError::Port(x)))
                .unwrap_or(Ok(d))
        };
        spec.listen.https_port = port(l.https, 443)?;
        spec.listen.http_port = port(l.http, 80)?;
    }
    if let Some(m) = maxconn {
        spec.maxconn = m;
    }
    if let Some(t) = timeouts {
        spec.timeouts = t;
    }
    Ok(spec)
}

/// A guest's cloud config with the HAProxy payload of `rendered` added.
pub fn with_payload(mut ci: CloudConfig, rendered: &Rendered) -> CloudConfig {
    let p = waddle_haproxy::payload(rendered);
    ci.packages.extend(p.packages);
    ci.files.extend(p.files.into_iter().map(|f| SeedFile {
        path: f.path,
        content: f.content,
        owner: f.owner.into(),
        permissions: f.permissions.into(),
        defer: true,
    }));
    ci.commands.extend(p.commands);
    ci
}

/// Seed ISO file name for a VM.
pub fn seed_iso_name(vmid: u32) -> String {
    format!("waddle-sni-proxy-{vmid}-seed.iso")
}

/// Refresh VM-level attributes from the VM config.
pub fn refresh_from_config(state: &mut SniProxyState, cfg: &VmConfig, importing: bool) {
    vm::ops::refresh_from_config::<SniProxy>(state, cfg, importing);
}

/// Where the VM keeps the configuration inputs it was built from, so an import can read
/// back what Proxmox does not know (routes, NIC addresses, cloud-init inputs).
pub const INPUTS_PATH: &str = "/etc/haproxy/waddle-inputs.json";
