//! Plan-time checks of a VM resource's cloud-init inputs with
//! `waddle_proxmox::cloud_config::validate`: unknown values are replaced by placeholders
//! and errors about placeholders dropped, so only known values are ever reported.

use std::net::IpAddr;

use waddle_framework::prelude::*;
use waddle_proxmox::cloud_config::{self, CiPath, CiStep, CloudConfig, GuestNic};

use super::{NicLayout, VmDefaults, VmResource};
use crate::resources::timeouts;

/// All plan-time checks of a VM resource (no API call): the payload's own first, then the
/// schema's validators, the cloud-init inputs and `timeouts`; at most
/// [`crate::resources::MAX_DIAGNOSTICS`] reported.
pub fn all<R: VmResource>(r: &R, config: &Value, diags: &mut Diagnostics) {
    let mut found = Diagnostics::new();
    r.validate(config, &mut found);
    r.schema().validate_values(config, &mut found);
    cloud_init_inputs(config, &R::DEFAULTS, R::NICS, &mut found);
    timeouts::validate(config, &mut found);
    crate::resources::capped(found, diags);
}

const PLACEHOLDER_CIDR: &str = "192.0.2.1/24";
const PLACEHOLDER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholderPlaceholderPlaceholder x";

fn p(name: &str) -> AttributePath {
    AttributePath::attr(name)
}

/// The configuration path of a cloud config error (`nics[0]` is the first NIC's attribute,
/// `hostname` is `name`).
fn config_path(e: &CiPath, nics: &[NicLayout]) -> AttributePath {
    let mut out = AttributePath::root();
    let mut steps = e.steps().iter().peekable();
    while let Some(s) = steps.next() {
        out = match s {
            CiStep::Attr(a) if a == "nics" && out.is_root() => match steps.next() {
                Some(CiStep::Index(i)) => match nics.get(*i) {
                    Some(n) => out.then_attr(n.attr),
                    None => out.then_attr("nics").then_index(*i as i64),
                },
                _ => out.then_attr("nics"),
            },
            CiStep::Attr(a) if a == "hostname" && out.is_root() => out.then_attr("name"),
            CiStep::Attr(a) => out.then_attr(a.clone()),
            CiStep::Index(i) => out.then_index(*i as i64),
        };
    }
    out
}

/// Check the cloud-init inputs (`name`, `admin_user`, `ssh_authorized_keys`, the NICs'
/// `cidr` and `gateway`); `instance_id` and interface names are fixed by the provider.
pub fn cloud_init_inputs(
    config: &Value,
    d: &VmDefaults,
    nics: &[NicLayout],
    diags: &mut Diagnostics,
) {
    let c = ConfigView::new(config);
    let mut unknown: Vec<AttributePath> = Vec::new();
    let mut text = |name: &str, default: &str| match c.str(name).or(default) {
        Some(s) => s.to_string(),
        None => {
            unknown.push(p(name));
            "placeholder".to_string()
        }
    };
    let hostname = text("name", d.name);
    let admin_user = text("admin_user", d.admin_user);
    let mut guest_nics = Vec::new();
    for nic in nics {
        let (cidr, gateway) = match c.object(nic.attr) {
            Field::Known(n) => {
                let cidr = match n.str("cidr") {
                    Field::Unknown => {
                        unknown.push(p(nic.attr).then_attr("cidr"));
                        PLACEHOLDER_CIDR.to_string()
                    }
                    f => f
                        .or(PLACEHOLDER_CIDR)
                        .unwrap_or(PLACEHOLDER_CIDR)
                        .to_string(),
                };
                let gateway = match n.str("gateway") {
                    Field::Unknown => {
                        unknown.push(p(nic.attr).then_attr("gateway"));
                        None
                    }
                    Field::Known(s) => match s.parse::<IpAddr>() {
                        Ok(ip) => Some(ip),
                        Err(_) => {
                            super::super::error_named(
                                diags,
                                p(nic.attr).then_attr("gateway"),
                                "Invalid value",
                                "the gateway must be an IP address",
                            );
                            None
                        }
                    },
                    Field::Null => None,
                };
                (cidr, gateway)
            }
            _ => {
                unknown.push(p(nic.attr));
                (PLACEHOLDER_CIDR.to_string(), None)
            }
        };
        guest_nics.push(GuestNic {
            name: nic.iface.into(),
            mac_address: None,
            cidr,
            gateway,
        });
    }
    let ssh_authorized_keys = match c.elements("ssh_authorized_keys") {
        Field::Known(keys) if keys.iter().all(Value::is_wholly_known) => keys
            .iter()
            .map(|k| k.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => {
            unknown.push(p("ssh_authorized_keys"));
            vec![PLACEHOLDER_KEY.into()]
        }
    };
    let ci = CloudConfig {
        hostname,
        instance_id: "waddle-vm-100".into(),
        admin_user,
        ssh_authorized_keys,
        nics: guest_nics,
        dns_servers: Vec::new(),
        packages: Vec::new(),
        files: Vec::new(),
        commands: Vec::new(),
    };
    if let Err(errs) = cloud_config::validate(&ci) {
        for e in errs.errors() {
            let path = config_path(&e.path, nics);
            if unknown.iter().any(|u| path.steps.starts_with(&u.steps)) {
                continue;
            }
            super::super::error_named(diags, path, "Invalid value", &e.message);
        }
    }
}
