//! The schema of `waddle_talos_cluster`.

use waddle_framework::prelude::*;
use waddle_framework::NestingMode;
use waddle_talos::versions;

use super::{defaults, etcd, timeouts, upgrade};

fn s(desc: &str) -> Attribute {
    Attribute::string().description(desc)
}

/// The schema.
pub fn schema() -> Schema {
    let placement = Attribute::nested(
        NestingMode::Single,
        [
            (
                "node",
                s("Proxmox VE node to create the VM on. Defaults to the provider's `node`.")
                    .optional()
                    ,
            ),
            (
                "storage",
                s(&format!(
                    "Storage for the VM's disks (system disk, EFI vars, TPM state). Defaults to `\"{}\"`.",
                    defaults::STORAGE
                ))
                .optional(),
            ),
            (
                "image_storage",
                s(&format!(
                    "Storage with `import` content where the Talos disk image is downloaded once per node. Defaults to `\"{}\"`.",
                    defaults::IMAGE_STORAGE
                ))
                .optional(),
            ),
            (
                "bridge",
                s(&format!(
                    "Bridge of the VM's NIC. Defaults to `\"{}\"`.",
                    defaults::BRIDGE
                ))
                .optional(),
            ),
            (
                "vmid",
                Attribute::number().optional().description(
                    "VM id. Defaults to the next free id (kept once allocated, see `proxmox_vms`).",
                ),
            ),
            (
                "cores",
                Attribute::number()
                    .optional()
                    .description(format!("vCPU cores. Defaults to `{}`.", defaults::CORES)),
            ),
            (
                "memory",
                Attribute::number()
                    .optional()
                    .description(format!(
                        "Memory in MiB. Defaults to `{}`.",
                        defaults::MEMORY_MIB
                    )),
            ),
            (
                "disk_size",
                Attribute::number()
                    .optional()
                    .description(format!(
                        "System disk size in GiB (the image is grown to it). Defaults to `{}`.",
                        defaults::DISK_GIB
                    )),
            ),
        ],
    )
    .optional()
    .description(
        "Create the node as a Proxmox VE VM: the Talos disk image (`image.disk_image_url`) is \
         downloaded once per node/storage and imported as the system disk; the VM gets the \
         node's MAC, the guest agent, and UEFI + TPM 2.0 when `secureboot` or \
         `disk_encryption` is set. The node needs no DHCP: its VM gets a Proxmox cloud-init \
         drive (`ide2: <storage>:cloudinit`, `citype = nocloud`, `ipconfig0` with `address` and \
         `gateway`, `nameserver` from `nameservers`), which Talos's `nocloud` platform applies \
         before the first boot, and the machine configuration is applied in maintenance mode \
         to `address` (chosen over an uploaded NoCloud ISO: no ISO upload, PVE regenerates the \
         drive at every start, the drive goes with the VM; needs `VM.Config.Cloudinit` and \
         `images` content on `storage`). The guest agent is not required: an IPv4 address it \
         reports is tried only while `address` does not answer (networks with DHCP). Without `proxmox` the node must already exist (bare metal \
         or a VM made elsewhere), see `maintenance_address`. `cores`, `memory` and `disk_size` \
         change in place (a disk only grows; CPU/memory restart the VM), one node at a time; \
         changing `node`, `storage`, `bridge` or `vmid` re-creates the node, one node at a \
         time, and is refused for the only control plane.",
    );

    let node = Attribute::nested(
        NestingMode::Map,
        [
            (
                "role",
                s("`controlplane` or `worker`. Changing it re-creates the node.").required(),
            ),
            (
                "address",
                s("Static address with prefix length, e.g. `10.10.0.10/24`.").required(),
            ),
            (
                "gateway",
                s("Default gateway, inside `address`'s subnet. Defaults to none.").optional(),
            ),
            (
                "mac",
                s(&format!(
                    "MAC address of the node's NIC; the Talos link is selected by it. Defaults, \
                     for Proxmox VMs, to a stable address derived from the cluster and node \
                     names (`{}:xx:xx:xx`).",
                    defaults::MAC_PREFIX
                ))
                .optional(),
            ),
            (
                "interface",
                s("Interface name (e.g. `ens18`) when the node has no `mac`. Defaults to none.")
                    .optional(),
            ),
            (
                "install_disk",
                s(&format!(
                    "Disk Talos installs to. Defaults to `\"{}\"`.",
                    defaults::INSTALL_DISK
                ))
                .optional(),
            ),
            (
                "hostname",
                s("Hostname. Defaults to the node's key in `nodes`.").optional(),
            ),
            (
                "node_labels",
                Attribute::map_of(Type::String)
                    .optional()
                    .description("Kubernetes node labels. Defaults to none."),
            ),
            (
                "config_patches",
                Attribute::list_of(Type::String).optional().description(
                    "Machine configuration patches for this node (strategic-merge YAML or \
                     JSON6902), applied after the cluster-wide `config_patches`. Defaults to none.",
                ),
            ),
            ("proxmox", placement),
            (
                "maintenance_address",
                s(
                    "For nodes without `proxmox`: the address (`ip` or `ip:port`) where the \
                   node answers the Talos API in maintenance mode. When null, the node is \
                   expected to be configured already and is reached on its static address.",
                )
                .optional(),
            ),
        ],
    )
    // Required in effect (validation refuses null). Declared optional + computed because
    // Terraform < 1.0.9 crashes planning a new required/optional nested attribute (it descends
    // into a null prior object); optional + computed nested attributes are taken as configured.
    .optional()
    .computed()
    .description(format!(
        "Required. Nodes by name (the name is the default hostname), at most {}. Adding a node \
         creates it and joins it to the cluster; removing one makes it leave etcd, resets it and \
         deletes its VM.",
        defaults::MAX_NODES
    ));

    Schema::new(
        "A Talos Linux cluster: per-node machine configurations generated from one secrets \
         bundle, Proxmox VE VMs created concurrently (or existing machines), configuration \
         applied in maintenance mode, etcd bootstrapped once, a health wait, then `kubeconfig` \
         and `talosconfig`. Later changes are applied with the least disruptive mode, control \
         planes one at a time.\n\nImport with `<cluster_name>:<path to secrets.yaml>`: the \
         nodes' VMs are found by their ownership mark, and every node's inputs are read back \
         from the line its machine configuration starts with, so the plan after an import is \
         empty (nodes without `proxmox` are added back by the next apply, in place).",
    )
    .version(0)
    .attribute(
        "id",
        s("The cluster name.").computed().use_state_for_unknown(),
    )
    .attribute(
        "cluster_name",
        s("Cluster name (lower-case DNS label). Changing it re-creates the cluster.")
            .required()
            .requires_replace(),
    )
    .attribute(
        "endpoint",
        s("Kubernetes API endpoint, e.g. `https://10.10.0.20:6443` (normally the VIP).")
            .required(),
    )
    .attribute(
        "vip",
        s("Shared layer-2 virtual IP of the control planes (Layer2VIPConfig). Defaults to none.")
            .optional(),
    )
    .attribute(
        "talos_version",
        s(&format!(
            "Talos version. Changing it upgrades every node in place, control planes one at a \
             time (see `upgrade`); skipping a minor release or going down is refused at plan. \
             Defaults to `\"{}\"`.",
            versions::DEFAULT_TALOS_VERSION
        ))
        .default(versions::DEFAULT_TALOS_VERSION),
    )
    .attribute(
        "kubernetes_version",
        s(&format!(
            "Kubernetes version. Changing it upgrades in `talosctl upgrade-k8s` order: the \
             control-plane components one control plane at a time, then the kubelets node by \
             node, control planes first; skipping a minor release or going down is refused at \
             plan. Defaults to `\"{}\"`.",
            versions::DEFAULT_KUBERNETES_VERSION
        ))
        .default(versions::DEFAULT_KUBERNETES_VERSION),
    )
    .attribute(
        "image",
        Attribute::nested(
            NestingMode::Single,
            [
                (
                    "installer",
                    s("Installer image (`waddle_talos_image.installer_image`). Defaults to \
                       `ghcr.io/siderolabs/installer:<talos_version>`.")
                    .optional(),
                ),
                (
                    "disk_image_url",
                    s("Disk image Proxmox downloads for VMs (`waddle_talos_image.disk_image_url`, \
                       a `nocloud` `.qcow2`). Required when a node has `proxmox`.")
                    .optional(),
                ),
            ],
        )
        .optional()
        .computed()
        .description(
            "Talos image, normally from `data.waddle_talos_image` (extensions \
             qemu-guest-agent + iscsi-tools).",
        ),
    )
    .attribute(
        "cni",
        s("`none` (install your own, e.g. through `inline_manifests`) or `flannel`. Defaults to `\"none\"`.")
            .default(defaults::CNI),
    )
    .attribute(
        "kube_proxy",
        Attribute::bool()
            .default(false)
            .description("Run kube-proxy. Defaults to `false`."),
    )
    .attribute(
        "allow_scheduling_on_control_planes",
        Attribute::bool()
            .default(true)
            .description("Allow workloads on control planes. Defaults to `true`."),
    )
    .attribute(
        "cert_sans",
        Attribute::list_of(Type::String).optional().description(
            "Extra SANs of the API server and Talos API certificates (the VIP and node \
             addresses are always included). Defaults to none.",
        ),
    )
    .attribute(
        "nameservers",
        Attribute::list_of(Type::String)
            .default(Value::List(vec!["1.1.1.1".into(), "8.8.8.8".into()]))
            .description("DNS servers. Defaults to `[\"1.1.1.1\", \"8.8.8.8\"]`."),
    )
    .attribute(
        "inline_manifests",
        Attribute::nested(
            NestingMode::List,
            [
                ("name", s("Unique manifest name.").required()),
                ("contents", s("YAML manifest(s).").required()),
            ],
        )
        .optional()
        .computed()
        .description("Manifests applied at bootstrap. Defaults to none."),
    )
    .attribute(
        "disk_encryption",
        Attribute::bool().default(false).description(
            "TPM-sealed LUKS2 encryption of STATE and EPHEMERAL (VMs get a TPM 2.0). \
             Defaults to `false`.",
        ),
    )
    .attribute(
        "secureboot",
        Attribute::bool().default(false).description(
            "SecureBoot (use a SecureBoot image; VMs boot UEFI with keys in setup mode and a \
             TPM). Defaults to `false`.",
        ),
    )
    .attribute(
        "discovery",
        Attribute::bool()
            .default(true)
            .description("Talos discovery service. Defaults to `true`."),
    )
    .attribute(
        "config_patches",
        Attribute::list_of(Type::String).optional().description(
            "Patches for every node (strategic-merge YAML or JSON6902), before each node's own. \
             Defaults to none.",
        ),
    )
    .attribute(
        "machine_secrets",
        s("The cluster secrets bundle in `secrets.yaml` form. Generated once when neither this \
           nor `machine_secrets_wo` is set; set it to use an existing `secrets.yaml` (changing \
           it re-creates the cluster). Kept in state; see `machine_secrets_wo` to keep it out.")
        .optional()
        .computed()
        .sensitive()
        .use_state_for_unknown()
        .requires_replace(),
    )
    .attribute(
        "machine_secrets_wo",
        Attribute::string()
            .optional()
            .sensitive()
            .write_only()
            .description(
                "Write-only alternative to `machine_secrets` (Terraform >= 1.11, OpenTofu >= \
                 1.11): the `secrets.yaml` bundle, needed in the configuration on every plan \
                 and apply and never stored in state. Requires `machine_secrets_wo_version`; \
                 conflicts with `machine_secrets`. With it, `machine_secrets` and \
                 `machine_configurations` (which hold the bundle's keys) are null in state; \
                 what stays is what reading and destroying the cluster need without the \
                 bundle: `client_configuration` (the OS CA certificate and an admin client \
                 certificate and key), `talosconfig`, `kubeconfig` and the masked \
                 `machine_configurations_masked`. A bundle other than the cluster's is \
                 refused unless `machine_secrets_wo_version` changes, which re-creates the \
                 cluster. Switching from `machine_secrets` to it with the same bundle is an \
                 update.",
            ),
    )
    .attribute(
        "machine_secrets_wo_version",
        Attribute::number()
            .optional()
            .requires_replace()
            .description(
                "Version of `machine_secrets_wo`, stored in state: a change re-keys the cluster, \
                 that is, re-creates it with the new bundle (like a change of \
                 `machine_secrets`).",
            ),
    )
    .attribute(
        "on_destroy",
        s("How nodes are reset before their VMs are deleted: `graceful` (leave etcd, then \
           wipe), `forced` (wipe without leaving etcd) or `none`. Defaults to `\"graceful\"`.")
        .default(defaults::ON_DESTROY),
    )
    .attribute(
        timeouts::ATTR,
        timeouts::attribute(
            &defaults::TIMEOUTS,
            [
                "Overall deadline of create (install, bootstrap, health).",
                "Overall deadline of an update.",
                "Overall deadline of destroy.",
            ],
        ),
    )
    .attribute("upgrade", upgrade::upgrade_attribute())
    .attribute("nodes", node)
    .attribute(
        "talosconfig",
        s("talosctl client configuration (admin certificate; endpoints are the control planes).")
            .computed()
            .sensitive(),
    )
    .attribute(
        "kubeconfig",
        s("Admin kubeconfig (from the Talos API), server = `endpoint`.")
            .computed()
            .sensitive(),
    )
    .attribute(
        "client_configuration",
        Attribute::nested(
            NestingMode::Single,
            [
                ("ca_certificate", s("OS CA certificate (PEM).").computed()),
                (
                    "client_certificate",
                    s("Admin client certificate (PEM, Organization `os:admin`).").computed(),
                ),
                (
                    "client_key",
                    s("Admin client key (PEM).").computed().sensitive(),
                ),
            ],
        )
        .computed()
        .use_state_for_unknown()
        .description("Talos API client credentials."),
    )
    .attribute(
        "machine_configurations",
        Attribute::map_of(Type::String)
            .computed()
            .sensitive()
            .description(
                "Machine configuration of every node (multi-document YAML), by node name. Each \
                 starts with a comment line (`# waddle_talos_cluster inputs: ...`) holding this \
                 resource's configured attributes for that node, without `machine_secrets`, \
                 read back by an import; Talos ignores it.",
            ),
    )
    .attribute(
        "machine_configurations_masked",
        Attribute::map_of(Type::String)
            .computed()
            .description(
                "Machine configuration of every node, by node name, with every secret masked \
                 (keys, tokens, the cluster secret and id, encryption secrets, passwords; \
                 certificates stay): not sensitive, so a plan shows which keys of which node \
                 change. Known at plan when the inputs and the secrets are.",
            ),
    )
    .attribute(
        "node_addresses",
        Attribute::map_of(Type::String)
            .computed()
            .description("Static address (without prefix) of every node, by node name."),
    )
    .attribute(
        "proxmox_vms",
        Attribute::map_of(Type::object([
            ("node".to_string(), Type::String),
            ("vmid".to_string(), Type::Number),
        ]))
        .computed()
        .description("Proxmox VE VMs this resource created, by node name."),
    )
    .attribute(
        "proxmox_images",
        Attribute::list_of(Type::object([
            ("node".to_string(), Type::String),
            ("volume".to_string(), Type::String),
        ]))
        .computed()
        .description("Disk images this resource downloaded (deleted on destroy)."),
    )
    .attribute(
        "bootstrapped",
        Attribute::bool()
            .computed()
            .description("Whether etcd has been bootstrapped."),
    )
    .attribute(
        "node_status",
        Attribute::map_of(Type::object([
            ("action".to_string(), Type::String),
            ("mac".to_string(), Type::String),
            ("cores".to_string(), Type::Number),
            ("memory".to_string(), Type::Number),
            ("disk_size".to_string(), Type::Number),
        ]))
        .computed()
        .description(
            "Every node's effective values (`mac`, and for Proxmox VMs `cores`, `memory` in \
             MiB, `disk_size` in GiB, defaults included) and `action`: what the last apply did \
             to it (`created`, `resized in place: ...`, `re-created: ...`; `not done: ...` \
             when an apply stopped before reaching it). A plan that changes a node shows the \
             new `action`.",
        ),
    )
    .attribute("node_versions", upgrade::node_versions_attribute())
    .attributes_from(etcd::attributes())
}

/// Adds attributes kept in the resource's own modules.
trait AttributesFrom {
    fn attributes_from(self, attrs: Vec<(&'static str, Attribute)>) -> Self;
}

impl AttributesFrom for Schema {
    fn attributes_from(self, attrs: Vec<(&'static str, Attribute)>) -> Self {
        attrs.into_iter().fold(self, |s, (n, a)| s.attribute(n, a))
    }
}
