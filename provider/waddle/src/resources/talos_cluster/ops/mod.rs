//! Orchestration of `waddle_talos_cluster`: Proxmox VMs, Talos API calls, health.
//!
//! Every node is handled concurrently (Proxmox mutations are bounded by the client's
//! per-node permits); waiting uses short, growing poll intervals under one overall deadline
//! so the wall time stays close to the slowest node. A failure part-way still returns a
//! state listing every VM and image that exists, so the next apply or destroy cleans up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use waddle_framework::prelude::*;
use waddle_talos::api::{ConnectOptions, Credentials, Proxy};
use waddle_talos::secrets::{issue_client_certificate, ADMIN_ROLE, CLIENT_CERT_TTL};
use waddle_talos::{SecretsBundle, SystemClock};

use super::{
    image_file_name, node_ip, ClientConfigModel, ClusterModel, ImageRef, NodeModel, VmRef,
};
use crate::provider::ProviderConfig;

mod address;
mod create;
mod delete;
mod env;
mod error;
pub mod etcd_backup;
pub mod health;
mod import;
mod imported;
pub mod kube;
pub mod moved;
mod owned;
mod provision;
mod read;
mod remove;
mod talos;
mod update;
mod upgrade;
mod versions;

pub use create::create;
pub use delete::delete;
use env::{api_addr, classify};
pub use env::{Attempt, Env, Poll};
pub use health::health;
pub use import::{import, read_secrets_file, SecretsFileError, MAX_SECRETS_FILE};
pub use owned::{owned_image_file_name, owner_mark};
pub(super) use provision::provision_all;
pub use provision::vm_spec;
pub use read::read;
pub(super) use remove::remove_node;
use remove::reset_node;
pub use talos::bootstrap;
use talos::{answers_mtls, apply_configured, fetch_kubeconfig, finish, readyz};
pub(super) use talos::{node_booted, node_health, wait_configured};
pub use update::update;

pub use error::OpError;

type R<T> = Result<T, OpError>;

/// Provider config, optional Proxmox client and the Talos connection options.
fn provider_parts(ctx: &Context, needs_pve: bool, diags: &mut Diagnostics) -> Option<Parts> {
    let cfg = ctx
        .provider_data::<ProviderConfig>()
        .cloned()
        .unwrap_or_default();
    let mut opts = ConnectOptions {
        cancel: ctx.cancellation().clone(),
        ..Default::default()
    };
    if let Some(p) = &cfg.proxy_url {
        match Proxy::parse(p) {
            Ok(p) => opts.proxy = Some(p),
            Err(e) => {
                diags.error("Invalid proxy_url", format!("provider proxy_url: {e}"));
                return None;
            }
        }
    }
    let pve = if needs_pve {
        match crate::clients::proxmox_for(&cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                diags.error(
                    "Proxmox VE client not configured",
                    format!(
                        "provider \"waddle\" attribute `{}`: {e}",
                        crate::clients::attribute_of(&e)
                    ),
                );
                return None;
            }
        }
    } else {
        crate::clients::proxmox_for(&cfg).ok()
    };
    Some(Parts {
        pve,
        connect: opts,
        proxy_url: cfg.proxy_url.clone(),
        default_node: cfg.node.clone(),
    })
}

/// What the provider configuration gives an operation.
#[derive(Clone)]
pub struct Parts {
    pub pve: Option<waddle_proxmox::Client>,
    pub connect: ConnectOptions,
    pub proxy_url: Option<String>,
    pub default_node: Option<String>,
}

fn credentials(m: &ClusterModel, bundle: &SecretsBundle) -> R<(Credentials, ClientConfigModel)> {
    if let Some(c) = &m.client_configuration {
        if !c.client_key.is_empty() {
            return Ok((
                Credentials::new(&c.ca_certificate, &c.client_certificate, &c.client_key),
                c.clone(),
            ));
        }
    }
    let ck = issue_client_certificate(bundle, ADMIN_ROLE, &SystemClock, CLIENT_CERT_TTL)
        .map_err(|e| OpError::Step(format!("issuing the admin client certificate: {e}")))?;
    let cc = ClientConfigModel {
        ca_certificate: bundle.os_ca.crt.clone(),
        client_certificate: ck.crt.clone(),
        client_key: ck.key.clone(),
    };
    Ok((Credentials::new(&bundle.os_ca.crt, ck.crt, ck.key), cc))
}

pub(super) fn control_planes(m: &ClusterModel) -> Vec<(String, NodeModel)> {
    m.nodes()
        .into_iter()
        .filter(|(_, n)| n.role == "controlplane")
        .collect()
}

fn talosconfig_of(m: &ClusterModel, bundle: &SecretsBundle, cc: &ClientConfigModel) -> R<String> {
    let eps: Vec<String> = control_planes(m)
        .iter()
        .map(|(_, n)| node_ip(n).to_string())
        .collect();
    // Endpoints and default nodes are the control planes: the talosconfig only changes
    // when they do.
    waddle_talos::talosconfig::talosconfig(
        &m.cluster_name,
        &eps,
        &eps,
        bundle,
        &waddle_talos::CertAndKey {
            crt: cc.client_certificate.clone(),
            key: cc.client_key.clone(),
        },
    )
    .map_err(|e| OpError::Step(format!("talosconfig: {e}")))
}

fn render_all(m: &ClusterModel, bundle: &SecretsBundle) -> R<BTreeMap<String, String>> {
    super::inputs::render_configs(m, bundle)
        .map_err(|(name, e)| OpError::Step(format!("nodes[{name:?}]: {e}")))
}

/// Shared, partially filled record of what exists in Proxmox.
#[derive(Default)]
pub struct Created {
    pub vms: Mutex<BTreeMap<String, VmRef>>,
    pub images: Mutex<BTreeSet<ImageRef>>,
    /// A create (no prior state): images with this cluster's name that exist already were
    /// downloaded by an earlier, interrupted create of this resource and are recorded too.
    pub fresh: bool,
    /// An update of an imported state that was not read back (no nodes): it adopts the
    /// cluster's nodes, and the images with this cluster's name are the cluster's too.
    pub adopting: bool,
}

impl Created {
    fn from_model(m: &ClusterModel) -> Self {
        Created {
            vms: Mutex::new(m.proxmox_vms.clone().unwrap_or_default()),
            images: Mutex::new(
                m.proxmox_images
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ),
            fresh: false,
            adopting: m.nodes.is_none(),
        }
    }
    fn add_vm(&self, name: &str, r: VmRef) {
        if let Ok(mut v) = self.vms.lock() {
            v.insert(name.to_string(), r);
        }
    }
    fn remove_vm(&self, name: &str) {
        if let Ok(mut v) = self.vms.lock() {
            v.remove(name);
        }
    }
    fn write_into(&self, m: &mut ClusterModel) {
        let vms = self.vms.lock().map(|v| v.clone()).unwrap_or_default();
        m.proxmox_vms = Some(vms);
        m.proxmox_images = Some(
            self.images
                .lock()
                .map(|v| v.iter().cloned().collect())
                .unwrap_or_default(),
        );
    }
}

fn make_env(parts: Parts, creds: Credentials, timeout: Duration, ctx: &Context) -> Env {
    Env {
        pve: parts.pve,
        connect: parts.connect,
        creds,
        deadline: Instant::now() + timeout,
        poll: Poll::default(),
        cancel: ctx.cancellation().clone(),
        proxy_url: parts.proxy_url,
        default_node: parts.default_node,
    }
}

fn bundle_of(m: &ClusterModel) -> R<SecretsBundle> {
    let s = m
        .machine_secrets
        .as_deref()
        .ok_or("the state has no machine_secrets")?;
    SecretsBundle::from_yaml(s).map_err(|e| OpError::Step(format!("machine_secrets: {e}")))
}

fn takes_every_apply(m: &ClusterModel) -> bool {
    m.etcd_backup
        .as_ref()
        .is_some_and(|b| b.takes(super::etcd::EVERY_APPLY))
}

#[cfg(test)]
mod deadline_tests;
