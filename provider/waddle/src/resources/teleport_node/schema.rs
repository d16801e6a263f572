//! The schema of `waddle_teleport_node`: the shared VM attributes (`vm::schema`), the one
//! private NIC, and Teleport's inputs, which are applied in place (except `cluster_name`).

use waddle_framework::prelude::*;

use super::{
    DEFAULTS, DEFAULT_CIDR, DEFAULT_GATEWAY, DEFAULT_PROXMOX_UI, DEFAULT_VERSION, NICS, TIMEOUTS,
};
use crate::resources::{timeouts, vm};

fn strings(d: &str) -> Attribute {
    Attribute::list_of(Type::String).optional().description(d)
}

fn labels(d: &str) -> Attribute {
    Attribute::map_of(Type::String).optional().description(d)
}

fn private_nic() -> Attribute {
    let nic = &NICS[0];
    Attribute::nested(
        NestingMode::Single,
        [
            (
                "bridge",
                Attribute::string()
                    .required()
                    .description(format!(
                        "Bridge of the platform network, e.g. `vmbr1` (`{}`).",
                        nic.iface
                    ))
                    .validate(Validator::custom("Invalid value", |v| match v.as_str() {
                        Some(b) => {
                            waddle_proxmox::props::validate_bridge(b).map_err(|e| e.to_string())
                        }
                        None => Ok(()),
                    })),
            ),
            (
                "cidr",
                Attribute::string()
                    .default(DEFAULT_CIDR)
                    .description(format!(
                        "Static address in CIDR notation. Default `{DEFAULT_CIDR}`."
                    )),
            ),
            (
                "gateway",
                Attribute::string()
                    .default(DEFAULT_GATEWAY)
                    .description(format!(
                    "Default gateway (the platform network's router). Default `{DEFAULT_GATEWAY}`."
                )),
            ),
        ],
    )
    .required()
    .requires_replace()
    .description(
        "The only NIC (`net0`, virtio) on the platform network: Teleport is reached through the \
         SNI proxy, never directly. Changing it replaces the VM (cloud-init applies the network \
         configuration once).",
    )
}

/// The resource schema.
pub fn schema() -> Schema {
    let mut s = Schema::new(
        "A Teleport 18 node on Proxmox VE: a Debian 12 VM with a private NIC only, Teleport \
         Community installed by cloud-init from Teleport's apt repository at a pinned version, \
         running the auth, proxy, SSH, Kubernetes and app services with GitHub SSO. The GitHub \
         connector and roles are created through the guest agent (`tctl create -f`) once the \
         auth service answers, and updated in place; secrets (client secret, kubeconfig) never \
         go into the NoCloud seed ISO: they travel through the guest agent into root-only \
         files. Configuration, apps, roles, team mappings, the kubeconfig and the Teleport \
         version (within a major or to the next) change in place; a new `cluster_name` or VM \
         settings replace the VM.",
    )
    .version(0)
    .attribute("private_nic", private_nic());
    for (name, a) in vm::schema::attributes(&DEFAULTS, &NICS) {
        s = s.attribute(name, a);
    }
    s = s
        .attribute(
            "teleport_version",
            Attribute::string().default(DEFAULT_VERSION).description(format!(
                "Teleport Community version from `apt.releases.teleport.dev` (`<major>.<minor>.<patch>`, \
                 no `v`). Default `{DEFAULT_VERSION}`. A new version within the same major or the next \
                 one is installed in place (package upgrade + restart); skipping a major is refused at \
                 plan (Teleport refuses to start on data of a version two majors older)."
            )),
        )
        .attribute(
            "domain",
            Attribute::string().required().description(
                "The platform domain, e.g. `waddle.social`. Apps are published under it (the Proxmox UI \
                 as `proxmox.<domain>`). Updated in place.",
            ),
        )
        .attribute(
            "public_addr",
            Attribute::string().optional().computed().description(
                "The proxy's public host name (no scheme, no port; served on 443 through the SNI proxy). \
                 Default `teleport.<domain>`. Updated in place.",
            ),
        )
        .attribute(
            "cluster_name",
            Attribute::string().optional().computed().description(
                "Teleport cluster name. Default `public_addr`. Teleport cannot rename a cluster: a change \
                 replaces the VM (and the cluster's state with it), and the plan says so.",
            ),
        )
        .attribute(
            "acme_email",
            Attribute::string().optional().description(
                "Set: the proxy gets its certificate from Let's Encrypt (ACME TLS-ALPN-01, which passes \
                 through the SNI proxy untouched) with this contact email. Unset: ACME off. Updated in place.",
            ),
        )
        .attribute(
            "proxy_protocol",
            Attribute::bool().default(false).description(
                "Teleport expects a PROXY protocol v2 header on every connection (`proxy_protocol: on`). \
                 Must match the SNI proxy route to this node (see `sni_routes`). Default `false`. \
                 Updated in place.",
            ),
        )
        .attribute(
            "sni_routes",
            Attribute::nested(
                NestingMode::List,
                [
                    ("hostnames", Attribute::list_of(Type::String).required().description("Route host names.")),
                    ("backend", Attribute::string().required().description("`<ip>:<port>`.")),
                    ("proxy_protocol", Attribute::bool().optional().description("The route sends PROXY v2. Default `false`.")),
                    ("check", Attribute::bool().optional().description("Health check (ignored here).")),
                ],
            )
            .optional()
            .description(
                "The `routes` of the `waddle_sni_proxy` in front, for a plan-time check only: every route \
                 whose backend is this node's `<ip>:3080` must have `proxy_protocol` equal to this \
                 resource's (a mismatch breaks every connection).",
            ),
        )
        .attribute(
            "local_auth",
            Attribute::bool().default(false).description(
                "Allow local (password) users besides GitHub SSO. Default `false`. Updated in place.",
            ),
        )
        .attribute(
            "github",
            Attribute::nested(
                NestingMode::Single,
                [
                    ("client_id", Attribute::string().required().description("GitHub OAuth app client id.")),
                    (
                        "connector_name",
                        Attribute::string().default("github").description("Connector name. Default `github`."),
                    ),
                    (
                        "teams_to_roles",
                        // A list of objects, not a nested attribute: Terraform 1.0 panics on a
                        // nested attribute inside a nested attribute when planning a create.
                        Attribute::list_of(Type::object([
                            ("organization".to_string(), Type::String),
                            ("team".to_string(), Type::String),
                            ("roles".to_string(), Type::list(Type::String)),
                        ]))
                        .required()
                        .description(
                            "Team to roles mapping (at least one): `{ organization, team, roles }`, \
                             roles from `roles` or the built-in `access`, `editor`, `auditor`.",
                        ),
                    ),
                ],
            )
            .required()
            .description(
                "GitHub SSO: the `github` connector (kind `github`, version `v3`, redirect URL \
                 `https://<public_addr>/v1/webapi/github/callback`) created with `tctl create -f` through \
                 the guest agent. Updated in place.",
            ),
        )
        .attribute(
            "github_client_secret",
            Attribute::string().optional().sensitive().description(
                "GitHub OAuth app client secret (exactly one of this and `github_client_secret_wo`). \
                 Delivered through the guest agent into a root-only file, never through the seed ISO; \
                 checked against GitHub's token endpoint after the connector is created.",
            ),
        )
        .attribute(
            "github_client_secret_wo",
            Attribute::string().optional().sensitive().write_only().description(
                "Write-only client secret (never stored in state; Terraform >= 1.11, OpenTofu >= 1.11). \
                 Bump `github_client_secret_wo_version` to push a new one.",
            ),
        )
        .attribute(
            "github_client_secret_wo_version",
            Attribute::number().optional().description(
                "Version of `github_client_secret_wo`: a change pushes the write-only secret again.",
            ),
        )
        .attribute(
            "roles",
            Attribute::nested(
                NestingMode::Map,
                [
                    ("logins", strings("SSH logins.")),
                    ("kubernetes_groups", strings("Kubernetes groups.")),
                    ("kubernetes_users", strings("Kubernetes users.")),
                    ("node_labels", labels("SSH node labels allowed.")),
                    ("app_labels", labels("App labels allowed.")),
                    ("kubernetes_labels", labels("Kubernetes cluster labels allowed.")),
                ],
            )
            .optional()
            .description(
                "Teleport roles (`kind: role`, `version: v7`) by name: their allow rules. Created and \
                 updated in place with `tctl create -f`; a role removed here is deleted.",
            ),
        )
        .attribute("ssh_labels", labels("Labels of this node's SSH service. Updated in place."))
        .attribute(
            "kubeconfig",
            Attribute::string().optional().sensitive().description(
                "Kubeconfig of the cluster the Kubernetes service serves (e.g. from \
                 `waddle_talos_cluster`). Written root-only through the guest agent; a new one is \
                 rotated in place (file replaced, Teleport reloaded). Unset: no Kubernetes service.",
            ),
        )
        .attribute(
            "apps",
            Attribute::nested(
                NestingMode::List,
                [
                    ("name", Attribute::string().required().description("App name (a DNS label, unique).")),
                    ("uri", Attribute::string().required().description("`http://`, `https://` or `tcp://<host>:<port>`.")),
                    ("public_addr", Attribute::string().optional().description("Public host name, inside `domain`. Default `<name>.<public_addr>`.")),
                    ("insecure_skip_verify", Attribute::bool().optional().description("Skip TLS verification of the app.")),
                    ("labels", labels("App labels.")),
                ],
            )
            .optional()
            .description(
                "Apps of the app service besides the Proxmox UI (TCP apps such as \
                 `tcp://<talos vip>:50000` let `tsh proxy app` carry `talosctl`). Updated in place.",
            ),
        )
        .attribute(
            "proxmox_ui_uri",
            Attribute::string().default(DEFAULT_PROXMOX_UI).description(format!(
                "The Proxmox UI, published as app `proxmox` at `proxmox.<domain>` with \
                 `insecure_skip_verify`. Default `{DEFAULT_PROXMOX_UI}`; set to `\"\"` for no such app."
            )),
        )
        .attribute(
            timeouts::ATTR,
            timeouts::attribute(
                &TIMEOUTS,
                [
                    "Deadline of create, including the package installation and the wait for Teleport to answer.",
                    "Deadline of an update (package upgrades included).",
                    "Deadline of destroy (the ACPI shutdown waits at most 60s of it, then the VM is stopped).",
                ],
            ),
        );
    for (name, d) in [
        ("web_url", "`https://<public_addr>`."),
        ("teleport_yaml", "The rendered `/etc/teleport.yaml` (holds no secret); after a refresh, the live file if it drifted."),
        ("config_hash", "SHA-256 over teleport.yaml, the connector (without its secret) and the roles. Refresh reads them live through the guest agent; a difference is drift, repaired by the next apply."),
    ] {
        s = s.attribute(name, Attribute::string().computed().description(d));
    }
    s
}
