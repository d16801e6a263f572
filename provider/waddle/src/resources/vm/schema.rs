//! The attributes every VM resource shares, with their validators.

use waddle_framework::prelude::*;

use super::{NicLayout, VmDefaults};
use crate::provider::ENV_NODE;

fn replace(a: Attribute) -> Attribute {
    a.requires_replace()
}

fn string_check<E: std::fmt::Display + 'static>(f: fn(&str) -> Result<(), E>) -> Validator {
    Validator::custom("Invalid value", move |v| match v.as_str() {
        Some(s) => f(s),
        None => Ok(()),
    })
}

/// The shared VM attributes: `id`, `seed_iso` and each NIC's address (computed) and
/// placement, image and cloud-init inputs, all forcing replacement.
pub fn attributes(d: &VmDefaults, nics: &[NicLayout]) -> Vec<(&'static str, Attribute)> {
    let addresses = nics.iter().map(|nic| {
        let doc = format!(
            "IP address of `{}` (its `cidr` without prefix length).",
            nic.attr
        );
        (nic.address, Attribute::string().computed().description(doc))
    });
    let mut attrs: Vec<(&'static str, Attribute)> = addresses.collect();
    attrs.extend([
        (
            "id",
            Attribute::string()
                .computed()
                .use_state_for_unknown()
                .description("`<node>/<vmid>`. Import accepts this or a plain VM id."),
        ),
        (
            "seed_iso",
            Attribute::string()
                .computed()
                .use_state_for_unknown()
                .description("Volume id of the uploaded NoCloud seed ISO (deleted with the VM)."),
        ),
        (
            "name",
            replace(Attribute::string().default(d.name).description(format!(
                "VM name and guest hostname (a DNS name). Default `{}`. Changing it \
                 replaces the VM (the hostname is set by cloud-init at first boot).",
                d.name
            ))),
        ),
        (
            "node",
            replace(
                Attribute::string()
                    .optional()
                    .computed()
                    .use_state_for_unknown()
                    .description(format!(
                        "Proxmox VE node the VM runs on. Defaults to the provider's `node` \
                         (or `{ENV_NODE}`). Changing it replaces the VM."
                    ))
                    .validate(string_check(crate::provider::validate_node)),
            ),
        ),
        (
            "vmid",
            replace(
                Attribute::number()
                    .optional()
                    .computed()
                    .use_state_for_unknown()
                    .description(
                        "Proxmox VM id (100-999999999). Unset: the next free id of the cluster is \
                         taken at create time. Changing it replaces the VM.",
                    )
                    .validate(Validator::int_range(100, 999_999_999))
                    .validate(Validator::custom("Invalid value", |v| {
                        match v.as_i64().and_then(|n| u32::try_from(n).ok()) {
                            Some(n) if (100..=999_999_999).contains(&n) => {
                                waddle_proxmox::props::validate_vmid(n)
                            }
                            _ => Ok(()), // out of range: reported by the range check
                        }
                    })),
            ),
        ),
        (
            "storage",
            replace(
                Attribute::string()
                    .default(d.storage)
                    .description(format!(
                        "Proxmox storage for the VM disk (content `images`). Default `{}`. \
                         Changing it replaces the VM.",
                        d.storage
                    ))
                    .validate(string_check(waddle_proxmox::props::validate_storage)),
            ),
        ),
        (
            "cores",
            replace(
                Attribute::number()
                    .default(Value::from(d.cores))
                    .description(format!(
                        "vCPUs. Default `{}`. Changing it replaces the VM.",
                        d.cores
                    ))
                    .validate(Validator::int_range(1, 512)),
            ),
        ),
        (
            "memory",
            replace(
                Attribute::number()
                    .default(Value::from(d.memory))
                    .description(format!(
                        "Memory in MiB (at least 256). Default `{}`. Changing it replaces the VM.",
                        d.memory
                    ))
                    .validate(Validator::int_range(256, 4_194_304)),
            ),
        ),
        (
            "disk_size",
            replace(
                Attribute::number()
                    .default(Value::from(d.disk_size))
                    .description(format!(
                        "Root disk size in GiB; the imported cloud image is grown to it. Default \
                         `{}`. Changing it replaces the VM.",
                        d.disk_size
                    ))
                    .validate(Validator::int_range(2, 65_536)),
            ),
        ),
        (
            "image_url",
            replace(
                Attribute::string()
                    .default(d.image_url)
                    .description(format!(
                        "Debian 12 cloud image (qcow2 or raw), downloaded by Proxmox with \
                         `download-url` into `import` content of `image_storage` (skipped when a \
                         file of the same name is already there). The file name is the URL's \
                         last path segment. Destroy deletes the image when waddle downloaded it \
                         and no other waddle VM on the node was created from it. Default `{}`. \
                         Changing it replaces the VM.",
                        d.image_url
                    ))
                    .validate(string_check(|u| {
                        super::lifecycle::image_file_name(u).map(|_| ())
                    })),
            ),
        ),
        (
            "image_storage",
            replace(
                Attribute::string()
                    .default(d.image_storage)
                    .description(format!(
                        "Proxmox storage (content `import` and `iso`) for the downloaded image and \
                         the uploaded NoCloud seed ISO. Default `{}`. Changing it replaces the VM.",
                        d.image_storage
                    ))
                    .validate(string_check(waddle_proxmox::props::validate_storage)),
            ),
        ),
        (
            "dns_servers",
            replace(
                Attribute::list_of(Type::String)
                    .default(Value::List(d.dns.iter().map(|s| Value::from(*s)).collect()))
                    .description(format!(
                        "DNS resolvers of the VM (IP addresses; needed to install packages). \
                         Default `[\"{}\", \"{}\"]`. Changing it replaces the VM.",
                        d.dns[0], d.dns[1]
                    ))
                    .validate(Validator::Ip),
            ),
        ),
        (
            "admin_user",
            replace(
                Attribute::string()
                    .default(d.admin_user)
                    .description(format!(
                "Admin login with the SSH keys and passwordless sudo (not `root`; password and \
                 root logins are disabled). Default `{}`. Changing it replaces the VM.",
                d.admin_user
            )),
            ),
        ),
        (
            "ssh_authorized_keys",
            replace(Attribute::list_of(Type::String).required().description(
                "OpenSSH public keys of the admin user (at least one). Changing them replaces the \
                 VM (cloud-init installs them at first boot).",
            )),
        ),
    ]);
    attrs
}

/// A NIC attribute: `bridge`, a static `cidr` and, when the layout says so, a `gateway`.
pub fn nic_attribute(nic: &NicLayout, examples: (&str, &str), description: &str) -> Attribute {
    let mut attrs = vec![
        (
            "bridge",
            Attribute::string()
                .required()
                .description(format!("Bridge, e.g. `{}`.", examples.0))
                .validate(string_check(waddle_proxmox::props::validate_bridge)),
        ),
        (
            "cidr",
            Attribute::string().required().description(format!(
                "Static address in CIDR notation, e.g. `{}`.",
                examples.1
            )),
        ),
    ];
    if nic.has_gateway {
        attrs.push((
            "gateway",
            Attribute::string().optional().description(
                "Default gateway (an IP of the same family). Unset: no default route.",
            ),
        ));
    }
    replace(
        Attribute::nested(NestingMode::Single, attrs)
            .required()
            .description(description),
    )
}
