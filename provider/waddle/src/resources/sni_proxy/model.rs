//! The state of `waddle_sni_proxy` (one field per attribute; see `assert_roundtrip` in the
//! tests) and what is derived from it: the routing spec, the rendering, the VM's cloud
//! config, the ownership mark and the inputs the VM keeps for an import.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use waddle_haproxy::{ProxySpec, Rendered, RouteSpec, Timeouts};
use waddle_proxmox::cloud_config::{CloudConfig, GuestNic, SeedFile};
use waddle_proxmox::{OwnerMark, VmConfig};

use super::{DEFAULT_ADMIN_USER, DEFAULT_IMAGE_STORAGE, DEFAULT_NAME, NICS, TIMEOUTS, TYPE_NAME};
use crate::resources::timeouts::{Op, TimeoutsModel};
use crate::resources::vm::lifecycle::VmFacts;

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
        let mut spec = ProxySpec::default();
        for r in self.routes.clone().unwrap_or_default() {
            spec.routes.push(RouteSpec {
                hostnames: r.hostnames,
                backend: r.backend,
                proxy_protocol: r.proxy_protocol.unwrap_or(false),
                check: r.check.unwrap_or(true),
            });
        }
        spec.http_backend = self.http_backend.clone();
        if let Some(l) = &self.listen {
            let port = |p: Option<u32>, d: u16| {
                p.map(|x| u16::try_from(x).map_err(|_| RoutingError::Port(x)))
                    .unwrap_or(Ok(d))
            };
            spec.listen.https_port = port(l.https, 443)?;
            spec.listen.http_port = port(l.http, 80)?;
        }
        if let Some(m) = self.maxconn {
            spec.maxconn = m;
        }
        if let Some(t) = &self.proxy_timeouts {
            let d = Timeouts::default();
            let fd = waddle_haproxy::format_duration;
            let g = |x: &Option<String>, def: Duration| x.clone().unwrap_or_else(|| fd(def));
            spec.timeouts = Timeouts::parse(
                &g(&t.connect, d.connect),
                &g(&t.client, d.client),
                &g(&t.server, d.server),
                &g(&t.tunnel, d.tunnel),
                &g(&t.inspect, d.inspect),
            )?;
        }
        Ok(spec)
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

    pub(super) fn image_storage(&self) -> &str {
        self.image_storage
            .as_deref()
            .unwrap_or(DEFAULT_IMAGE_STORAGE)
    }

    /// The VM name (the default when unset).
    pub(super) fn vm_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| DEFAULT_NAME.into())
    }

    /// The seed ISOs this state may own: the one named after `vmid` and the recorded one.
    pub(super) fn seed_isos(&self, vmid: u32) -> Vec<String> {
        crate::resources::vm::owned::seed_isos(
            self.image_storage(),
            &seed_iso_name(vmid),
            self.seed_iso.as_deref(),
        )
    }

    /// The VM's cloud config: the generic guest (NICs matched by `macs`) plus the HAProxy
    /// payload of `rendered`.
    pub(super) fn cloud_config(
        &self,
        vmid: u32,
        macs: &[Option<String>],
        rendered: &Rendered,
    ) -> CloudConfig {
        let mac = |i: usize| macs.get(i).cloned().flatten();
        let (public, private) = (self.public_nic.clone(), self.private_nic.clone());
        let base = CloudConfig {
            hostname: self.vm_name(),
            instance_id: format!("waddle-sni-{vmid}"),
            admin_user: self
                .admin_user
                .clone()
                .unwrap_or_else(|| DEFAULT_ADMIN_USER.into()),
            ssh_authorized_keys: self.ssh_authorized_keys.clone().unwrap_or_default(),
            nics: vec![
                GuestNic {
                    name: NICS[0].iface.into(),
                    mac_address: mac(0),
                    cidr: public.as_ref().map(|n| n.cidr.clone()).unwrap_or_default(),
                    gateway: public
                        .as_ref()
                        .and_then(|n| n.gateway.as_deref())
                        .and_then(|g| g.parse().ok()),
                },
                GuestNic {
                    name: NICS[1].iface.into(),
                    mac_address: mac(1),
                    cidr: private.map(|n| n.cidr).unwrap_or_default(),
                    gateway: None,
                },
            ],
            dns_servers: self
                .dns_servers
                .clone()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.parse().ok())
                .collect(),
            packages: Vec::new(),
            files: Vec::new(),
            commands: Vec::new(),
        };
        with_payload(base, rendered)
    }
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

/// The mark of the SNI proxy VM named `name` on `node`.
pub fn owner_mark(node: &str, name: &str) -> OwnerMark {
    OwnerMark::new(&[TYPE_NAME, node, name])
}

/// Refresh VM-level attributes from the VM config.
pub fn refresh_from_config(state: &mut SniProxyState, cfg: &VmConfig, importing: bool) {
    let f = VmFacts::of(cfg);
    if let Some(n) = f.name {
        state.name = Some(n);
    }
    if let Some(c) = f.cores {
        state.cores = Some(c);
    }
    if let Some(m) = f.memory {
        state.memory = Some(m);
    }
    // NICs: only the bridges are visible in Proxmox (the addresses live in cloud-init), so an
    // imported state leaves the NIC objects null and adopts them from the configuration.
    if let (Some(b), Some(n)) = (f.bridges.get(&0), &mut state.public_nic) {
        n.bridge = b.clone();
    }
    if let (Some(b), Some(n)) = (f.bridges.get(&1), &mut state.private_nic) {
        n.bridge = b.clone();
    }
    if let Some(s) = f.storage {
        state.storage = Some(s);
    }
    if importing {
        if let Some(d) = f.disk_size {
            state.disk_size = Some(d);
        }
    }
    if let Some((vol, storage)) = f.seed_iso {
        if importing {
            state.image_storage = Some(storage);
        }
        state.seed_iso = Some(vol);
    }
}

/// Where the VM keeps the configuration inputs it was built from, so an import can read
/// back what Proxmox does not know (routes, NIC addresses, cloud-init inputs).
pub const INPUTS_PATH: &str = "/etc/haproxy/waddle-inputs.json";

/// The configuration inputs of a state as JSON, `timeouts` included (identity and computed
/// attributes left out; nothing in them is secret: SSH keys are public keys).
pub fn inputs_json(st: &SniProxyState) -> String {
    let inputs = SniProxyState {
        id: None,
        node: None,
        vmid: None,
        haproxy_cfg: None,
        exact_map: None,
        wildcard_map: None,
        config_hash: None,
        seed_iso: None,
        ..st.clone()
    };
    serde_json::to_string_pretty(&inputs).unwrap_or_default()
}

/// An imported state: take what the VM's config did not give from the inputs it keeps
/// (attributes already known win). Unparseable inputs are ignored.
pub fn adopt_inputs(st: &mut SniProxyState, json: &str) {
    let Ok(i) = serde_json::from_str::<SniProxyState>(json) else {
        return;
    };
    fn fill<T>(slot: &mut Option<T>, v: Option<T>) {
        if slot.is_none() {
            *slot = v;
        }
    }
    fill(&mut st.name, i.name);
    fill(&mut st.storage, i.storage);
    fill(&mut st.cores, i.cores);
    fill(&mut st.memory, i.memory);
    fill(&mut st.disk_size, i.disk_size);
    fill(&mut st.image_url, i.image_url);
    fill(&mut st.image_storage, i.image_storage);
    fill(&mut st.public_nic, i.public_nic);
    fill(&mut st.private_nic, i.private_nic);
    fill(&mut st.dns_servers, i.dns_servers);
    fill(&mut st.admin_user, i.admin_user);
    fill(&mut st.ssh_authorized_keys, i.ssh_authorized_keys);
    fill(&mut st.routes, i.routes);
    fill(&mut st.http_backend, i.http_backend);
    fill(&mut st.listen, i.listen);
    fill(&mut st.maxconn, i.maxconn);
    fill(&mut st.proxy_timeouts, i.proxy_timeouts);
    fill(&mut st.public_address, i.public_address);
    fill(&mut st.private_address, i.private_address);
    fill(&mut st.timeouts, i.timeouts);
}
