//! Plan-time checks of `waddle_talos_cluster` (no API call): the resource's own attributes,
//! then, when the spec inputs are known, `waddle_talos`'s validation mapped to attribute
//! paths.

use std::collections::BTreeMap;

use waddle_framework::prelude::*;
use waddle_talos::{Cni, Role, SecretsBundle};

use super::{build_spec, defaults, etcd, image_file_name, model_of, timeouts, upgrade};

// ---------------------------------------------------------------------------------------

/// Converts a talos validation path into a framework attribute path (`installer_image` is
/// `image.installer` in this resource).
pub fn to_attr_path(p: &waddle_talos::AttrPath) -> AttributePath {
    let mut out = AttributePath::root();
    for (i, step) in p.steps().iter().enumerate() {
        out = match step {
            waddle_talos::PathStep::Attr(a) if i == 0 && a == "installer_image" => {
                out.then_attr("image").then_attr("installer")
            }
            waddle_talos::PathStep::Attr(a) => out.then_attr(a),
            waddle_talos::PathStep::Key(k) => out.then_key(k),
            waddle_talos::PathStep::Index(n) => out.then_index(*n as i64),
        };
    }
    out
}

/// Checks that need no complete spec: enumerations and per-node attributes that
/// waddle_talos does not know about. Unknown values are skipped.
pub(super) fn check_resource_attrs(config: &Value, diags: &mut Diagnostics) {
    let str_at = |p: &AttributePath| {
        config
            .get_path(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(c) = str_at(&AttributePath::attr("cni")) {
        if Cni::parse(&c).is_none() {
            diags.error_at(
                AttributePath::attr("cni"),
                "Invalid CNI",
                format!("{c:?}: must be \"none\" or \"flannel\""),
            );
        }
    }
    if let Some(c) = str_at(&AttributePath::attr("on_destroy")) {
        if !matches!(c.as_str(), "graceful" | "forced" | "none") {
            diags.error_at(
                AttributePath::attr("on_destroy"),
                "Invalid on_destroy",
                format!("{c:?}: must be \"graceful\", \"forced\" or \"none\""),
            );
        }
    }
    timeouts::validate(config, diags);
    upgrade::validate(config, diags);
    super::contract::validate(config, diags);
    let url_path = AttributePath::attr("image").then_attr("disk_image_url");
    let url = config.get_path(&url_path).cloned().unwrap_or(Value::Null);
    if let Some(u) = url.as_str() {
        if let Err(e) = image_file_name(u) {
            diags.error_at(url_path.clone(), "Invalid disk image URL", e);
        }
    }
    if config.get_attr("nodes").is_some_and(Value::is_null) {
        diags.error_at(
            AttributePath::attr("nodes"),
            "Missing required argument",
            "The argument \"nodes\" is required: at least one control plane node.",
        );
    }
    let Some(nodes) = config.get_attr("nodes").and_then(Value::as_entries) else {
        return;
    };
    if nodes.len() > defaults::MAX_NODES {
        diags.error_at(
            AttributePath::attr("nodes"),
            "Too many nodes",
            format!(
                "{} nodes: one waddle_talos_cluster manages at most {}",
                nodes.len(),
                defaults::MAX_NODES
            ),
        );
        return;
    }
    for (name, n) in nodes {
        let base = AttributePath::attr("nodes").then_key(name);
        if let Some(r) = n.get_attr("role").and_then(Value::as_str) {
            if Role::parse(r).is_none() {
                diags.error_at(
                    base.clone().then_attr("role"),
                    "Invalid role",
                    format!("{r:?}: must be \"controlplane\" or \"worker\""),
                );
            }
        }
        let px = n.get_attr("proxmox").cloned().unwrap_or(Value::Null);
        let maint = n
            .get_attr("maintenance_address")
            .cloned()
            .unwrap_or(Value::Null);
        if !px.is_null() && px.is_known() {
            if url.is_null() {
                diags.error_at(
                    url_path.clone(),
                    "Missing disk image",
                    format!(
                        "nodes[{name:?}] is a Proxmox VM: set image.disk_image_url (e.g. from data.waddle_talos_image)"
                    ),
                );
            }
            if !maint.is_null() {
                diags.error_at(
                    base.clone().then_attr("maintenance_address"),
                    "Conflicting attributes",
                    "maintenance_address is for nodes without `proxmox` (a VM gets `address` through its cloud-init drive and is configured there)",
                );
            }
            check_placement(&px, &base.clone().then_attr("proxmox"), diags);
            let num = |k: &str| px.get_attr(k).and_then(Value::as_i64);
            for (k, lo, hi) in [
                ("vmid", 100, 999_999_999),
                ("cores", 1, 8192),
                ("memory", 1024, 4 * 1024 * 1024),
                ("disk_size", 5, 65536),
            ] {
                if let Some(v) = num(k) {
                    if v < lo || v > hi {
                        diags.error_at(
                            base.clone().then_attr("proxmox").then_attr(k),
                            "Value out of range",
                            format!("{k} = {v}: must be between {lo} and {hi}"),
                        );
                    }
                }
            }
        }
        if let Some(a) = maint.as_str() {
            if waddle_talos::api::parse_endpoint(a).is_err() {
                diags.error_at(
                    base.clone().then_attr("maintenance_address"),
                    "Invalid address",
                    format!("{a:?}: expected an IP address with an optional port"),
                );
            }
        }
    }
    // Duplicate VM ids.
    let mut seen: BTreeMap<i64, &str> = BTreeMap::new();
    for (name, n) in nodes {
        if let Some(v) = n
            .get_attr("proxmox")
            .and_then(|p| p.get_attr("vmid"))
            .and_then(Value::as_i64)
        {
            if let Some(other) = seen.insert(v, name) {
                diags.error_at(
                    AttributePath::attr("nodes")
                        .then_key(name)
                        .then_attr("proxmox")
                        .then_attr("vmid"),
                    "Duplicate VM id",
                    format!("vmid {v} is also used by nodes[{other:?}]"),
                );
            }
        }
    }
}

/// Proxmox names in `nodes[*].proxmox`, checked like the API would (no API call).
fn check_placement(px: &Value, base: &AttributePath, diags: &mut Diagnostics) {
    let text = |k: &str| px.get_attr(k).and_then(Value::as_str);
    type Check = fn(&str) -> Result<(), Box<dyn std::error::Error>>;
    let checks: [(&str, Check); 4] = [
        ("node", |x| Ok(crate::provider::validate_node(x)?)),
        ("storage", |x| {
            Ok(waddle_proxmox::props::validate_storage(x)?)
        }),
        ("image_storage", |x| {
            Ok(waddle_proxmox::props::validate_storage(x)?)
        }),
        ("bridge", |x| Ok(waddle_proxmox::props::validate_bridge(x)?)),
    ];
    for (k, check) in checks {
        if let Some(Err(e)) = text(k).map(check) {
            crate::resources::error_named(diags, base.clone().then_attr(k), "Invalid value", e);
        }
    }
}

/// Whether the parts of the configuration the spec is made of are wholly known.
pub(super) fn spec_inputs_known(config: &Value) -> bool {
    const SPEC_ATTRS: &[&str] = &[
        "cluster_name",
        "endpoint",
        "vip",
        "talos_version",
        "kubernetes_version",
        "image",
        "cni",
        "kube_proxy",
        "allow_scheduling_on_control_planes",
        "cert_sans",
        "nameservers",
        "inline_manifests",
        "disk_encryption",
        "secureboot",
        "discovery",
        "config_patches",
    ];
    if !SPEC_ATTRS
        .iter()
        .all(|a| config.get_attr(a).is_none_or(Value::is_wholly_known))
    {
        return false;
    }
    let Some(nodes) = config.get_attr("nodes") else {
        return false;
    };
    let Some(entries) = nodes.as_entries() else {
        return false;
    };
    entries.values().all(|n| {
        [
            "role",
            "address",
            "gateway",
            "mac",
            "interface",
            "install_disk",
            "hostname",
            "node_labels",
            "config_patches",
        ]
        .iter()
        .all(|a| n.get_attr(a).is_none_or(Value::is_wholly_known))
    })
}

/// Full validation of a configuration (or plan) value: resource-level checks, then, when the
/// spec inputs are known, waddle_talos's validation mapped to attribute paths.
pub fn validate_value(config: &Value, diags: &mut Diagnostics) {
    let mut found = Diagnostics::new();
    validate_uncapped(config, &mut found);
    crate::resources::capped(found, diags);
}

fn validate_uncapped(config: &Value, diags: &mut Diagnostics) {
    check_resource_attrs(config, diags);
    etcd::validate(config, diags);
    super::wo::validate(config, diags);
    let too_many = config
        .get_attr("nodes")
        .and_then(Value::as_entries)
        .is_some_and(|n| n.len() > defaults::MAX_NODES);
    if too_many || !spec_inputs_known(config) {
        return;
    }
    let Some(m) = model_of(config) else {
        return;
    };
    if let Some(s) = config.get_attr("machine_secrets").and_then(Value::as_str) {
        if let Err(e) = SecretsBundle::from_yaml(s) {
            diags.error_at(
                AttributePath::attr("machine_secrets"),
                "Invalid secrets bundle",
                e.to_string(),
            );
        }
    }
    for issue in waddle_talos::validate(&build_spec(&m)) {
        let path = to_attr_path(&issue.path);
        let detail = crate::resources::named(&path, &issue.message);
        if issue.is_error() {
            diags.error_at(path, "Invalid cluster configuration", detail);
        } else {
            diags.warning_at(path, "Cluster configuration warning", detail);
        }
    }
}
