//! What each planned change needs from Proxmox VE: privileges on ACL paths, derived from the
//! resource type, the kind of change and the planned values. Kept in step with the API
//! schema's `permissions` of every endpoint a resource calls by `tests/preflight_table.rs`.

use waddle_framework::{PlanRequest, Value};

/// Where a privilege is needed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// A fixed ACL path such as `/vms/100` or `/storage/local`.
    Path(String),
    /// A VM NIC bridge: `SDN.Use` on `/sdn/zones/<zone>/<vnet>` for an SDN vnet, else on
    /// `/sdn/zones/localnetwork/<bridge>` (resolved with one read of the vnet).
    Bridge(String),
}

/// One alternative: every privilege on one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub target: Target,
    pub privs: Vec<&'static str>,
}

/// A requirement: satisfied when any alternative is held in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub any_of: Vec<Grant>,
    pub why: String,
}

impl Need {
    fn on(target: Target, privs: &[&'static str], why: impl Into<String>) -> Self {
        Need {
            any_of: vec![Grant {
                target,
                privs: privs.to_vec(),
            }],
            why: why.into(),
        }
    }
    fn path(path: impl Into<String>, privs: &[&'static str], why: impl Into<String>) -> Self {
        Self::on(Target::Path(path.into()), privs, why)
    }
    fn or(mut self, path: impl Into<String>, privs: &[&'static str]) -> Self {
        self.any_of.push(Grant {
            target: Target::Path(path.into()),
            privs: privs.to_vec(),
        });
        self
    }
}

/// The kind of change a plan makes to one resource instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Create,
    Update,
    Delete,
}

/// Allocation, the keys a new VM is created with (`VmSpec::to_params`: CPU, memory, hardware
/// type, options, disks and NICs) and `VM.Audit` to find it in `/cluster/resources`.
const VM_CREATE: &[&str] = &[
    "VM.Allocate",
    "VM.Audit",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.HWType",
    "VM.Config.Options",
    "VM.Config.Disk",
    "VM.Config.Network",
];

fn known_str(v: Option<&Value>) -> Option<&str> {
    v.filter(|v| v.is_known()).and_then(Value::as_str)
}

fn known_i64(v: Option<&Value>) -> Option<i64> {
    v.filter(|v| v.is_known()).and_then(Value::as_i64)
}

/// `/vms/<id>`, or `/vms` while the id is chosen at create time.
fn vm_path(vmid: Option<i64>) -> String {
    match vmid {
        Some(id) => format!("/vms/{id}"),
        None => "/vms".into(),
    }
}

/// Everything one new VM needs: allocation and its config keys, its disk storage, the
/// imported (downloaded) image, the bridges, power, and the guest agent privileges named.
struct NewVm<'a> {
    label: &'a str,
    node: Option<&'a str>,
    vmid: Option<i64>,
    storage: Option<&'a str>,
    image_storage: Option<&'a str>,
    bridges: Vec<&'a str>,
    agent: &'static [&'static str],
    /// What the guest agent is used for (for the message).
    agent_use: &'static str,
    extra_vm: &'static [&'static str],
}

impl NewVm<'_> {
    fn needs(&self, out: &mut Vec<Need>) {
        let vm = vm_path(self.vmid);
        let mut privs = VM_CREATE.to_vec();
        privs.extend_from_slice(self.extra_vm);
        privs.push("VM.PowerMgmt");
        out.push(Need::path(
            &vm,
            &privs,
            format!("create, configure and start VM {}", self.label),
        ));
        if !self.agent.is_empty() {
            out.push(Need::path(
                &vm,
                self.agent,
                format!(
                    "use the guest agent of VM {} ({})",
                    self.label, self.agent_use
                ),
            ));
        }
        if let Some(s) = self.storage {
            out.push(Need::path(
                format!("/storage/{s}"),
                &["Datastore.AllocateSpace"],
                format!("allocate the disks of {} on storage `{s}`", self.label),
            ));
        }
        if let Some(s) = self.image_storage {
            out.push(Need::path(
                format!("/storage/{s}"),
                &["Datastore.AllocateTemplate"],
                format!(
                    "download/upload images for {} into storage `{s}`",
                    self.label
                ),
            ));
            out.push(
                Need::path(
                    format!("/storage/{s}"),
                    &["Datastore.Audit"],
                    format!("read and import the images of {} from `{s}`", self.label),
                )
                .or(format!("/storage/{s}"), &["Datastore.AllocateSpace"]),
            );
            let mut net = Need::path(
                "/",
                &["Sys.Audit", "Sys.Modify"],
                "download-url (probes the node's network)",
            );
            if let Some(n) = self.node {
                net = Need {
                    any_of: vec![Grant {
                        target: Target::Path(format!("/nodes/{n}")),
                        privs: vec!["Sys.AccessNetwork"],
                    }],
                    why: net.why,
                }
                .or("/", &["Sys.Audit", "Sys.Modify"]);
            }
            out.push(net);
        }
        for b in &self.bridges {
            out.push(Need::on(
                Target::Bridge(b.to_string()),
                &["SDN.Use"],
                format!("attach {} to bridge `{b}`", self.label),
            ));
        }
    }
}

fn delete_vm(out: &mut Vec<Need>, label: &str, vmid: Option<i64>) {
    out.push(Need::path(
        vm_path(vmid),
        &["VM.Audit", "VM.PowerMgmt", "VM.Allocate"],
        format!("shut down and delete VM {label}"),
    ));
}

/// What `change` of a resource of `type_name` needs.
pub fn needs(
    type_name: &str,
    change: Change,
    req: &PlanRequest,
    planned: &Value,
    default_node: Option<&str>,
) -> Vec<Need> {
    let mut out = Vec::new();
    match type_name {
        "waddle_network" => network(change, req, planned, &mut out),
        "waddle_host_firewall" => host_firewall(change, req, planned, default_node, &mut out),
        "waddle_sni_proxy" => guest_vm(&SNI_PROXY, change, req, planned, default_node, &mut out),
        "waddle_teleport_node" => guest_vm(&TELEPORT, change, req, planned, default_node, &mut out),
        "waddle_talos_cluster" => talos_cluster(change, req, planned, default_node, &mut out),
        _ => {}
    }
    out
}

fn network(change: Change, req: &PlanRequest, planned: &Value, out: &mut Vec<Need>) {
    let src = if change == Change::Delete {
        &req.prior_state
    } else {
        planned
    };
    let zone = known_str(src.get_attr("zone"));
    let vnet = known_str(src.get_attr("vnet"));
    if change == Change::Create {
        out.push(Need::path(
            "/sdn/zones",
            &["SDN.Allocate"],
            "create the SDN zone",
        ));
    }
    if let Some(z) = zone {
        out.push(Need::path(
            format!("/sdn/zones/{z}"),
            &["SDN.Allocate"],
            format!("manage SDN zone `{z}` and its vnets"),
        ));
        if let Some(v) = vnet {
            out.push(Need::path(
                format!("/sdn/zones/{z}/{v}"),
                &["SDN.Allocate"],
                format!("manage vnet `{v}` and its subnet"),
            ));
        }
    }
    out.push(Need::path(
        "/sdn",
        &["SDN.Allocate"],
        "apply the SDN configuration",
    ));
}

/// Cluster options, IP sets, aliases and groups live on `/`; node rules on `/nodes/<node>`
/// (`pve-firewall`'s `rules_modify_permissions`). The lock-out check reads all of them.
fn host_firewall(
    change: Change,
    req: &PlanRequest,
    planned: &Value,
    default_node: Option<&str>,
    out: &mut Vec<Need>,
) {
    let src = if change == Change::Delete {
        &req.prior_state
    } else {
        planned
    };
    let node = known_str(src.get_attr("node")).or(default_node);
    out.push(Need::path(
        "/",
        &["Sys.Audit", "Sys.Modify"],
        "read and set the cluster firewall options, IP sets and security groups",
    ));
    if let Some(n) = node {
        out.push(Need::path(
            format!("/nodes/{n}"),
            &["Sys.Audit", "Sys.Modify"],
            format!("read and change the firewall rules of node `{n}`"),
        ));
    }
}

/// A VM resource on the shared guest layer (`resources::vm`).
struct GuestVmKind {
    default_name: &'static str,
    nics: &'static [&'static str],
    agent_use: &'static str,
    update: &'static str,
}

const SNI_PROXY: GuestVmKind = GuestVmKind {
    default_name: "sni-proxy",
    nics: &["public_nic", "private_nic"],
    agent_use: "run commands and write the HAProxy files in the guest",
    update: "rewrite the HAProxy configuration",
};

const TELEPORT: GuestVmKind = GuestVmKind {
    default_name: "teleport",
    nics: &["private_nic"],
    agent_use: "install Teleport's configuration and secrets and run tctl in the guest",
    update: "update Teleport's configuration, connector and roles",
};

fn guest_vm(
    kind: &GuestVmKind,
    change: Change,
    req: &PlanRequest,
    planned: &Value,
    default_node: Option<&str>,
    out: &mut Vec<Need>,
) {
    let src = if change == Change::Delete {
        &req.prior_state
    } else {
        planned
    };
    let node = known_str(src.get_attr("node")).or(default_node);
    let vmid = known_i64(src.get_attr("vmid"));
    let name = known_str(src.get_attr("name")).unwrap_or(kind.default_name);
    let label = format!("`{name}`");
    let image_storage = known_str(src.get_attr("image_storage"));
    match change {
        Change::Create => {
            let bridges = kind
                .nics
                .iter()
                .filter_map(|n| known_str(src.get_attr(n).and_then(|v| v.get_attr("bridge"))))
                .collect();
            NewVm {
                label: &label,
                node,
                vmid,
                storage: known_str(src.get_attr("storage")),
                image_storage,
                bridges,
                // cloud-init seed ISO in a CD-ROM drive; haproxy files through the agent
                // (`exec` needs VM.GuestAgent.Unrestricted, which also covers file-write).
                agent: &["VM.GuestAgent.Unrestricted"],
                agent_use: kind.agent_use,
                extra_vm: &["VM.Config.CDROM"],
            }
            .needs(out);
        }
        Change::Update => out.push(Need::path(
            vm_path(vmid),
            &["VM.Audit", "VM.PowerMgmt", "VM.GuestAgent.Unrestricted"],
            format!("{} of {label} through the guest agent", kind.update),
        )),
        Change::Delete => {
            delete_vm(out, &label, vmid);
            if let Some(s) = image_storage {
                out.push(Need::path(
                    format!("/storage/{s}"),
                    &["Datastore.Allocate"],
                    format!("delete the seed ISO and the downloaded image of {label}"),
                ));
            }
        }
    }
}

/// Proxmox-backed nodes of a `nodes` map: (name, proxmox object).
fn pve_nodes(v: &Value) -> Vec<(String, &Value)> {
    v.get_attr("nodes")
        .and_then(Value::as_entries)
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| {
                    n.get_attr("proxmox")
                        .filter(|p| !p.is_null())
                        .map(|p| (k.clone(), p))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The VM id recorded in `proxmox_vms` for a node, else the configured one.
fn recorded_vmid(state: &Value, name: &str, pve: &Value) -> Option<i64> {
    known_i64(
        state
            .get_attr("proxmox_vms")
            .and_then(Value::as_entries)
            .and_then(|m| m.get(name))
            .and_then(|v| v.get_attr("vmid")),
    )
    .or_else(|| known_i64(pve.get_attr("vmid")))
}

fn talos_cluster(
    change: Change,
    req: &PlanRequest,
    planned: &Value,
    default_node: Option<&str>,
    out: &mut Vec<Need>,
) {
    let prior: Vec<String> = pve_nodes(&req.prior_state)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let planned_nodes = if change == Change::Delete {
        Vec::new()
    } else {
        pve_nodes(planned)
    };
    // New VMs: every node on create, added nodes on update.
    for (name, pve) in &planned_nodes {
        if prior.contains(name) && change != Change::Create {
            continue;
        }
        let label = format!("`{name}`");
        let bridge = known_str(pve.get_attr("bridge")).unwrap_or("vmbr0");
        NewVm {
            label: &label,
            node: known_str(pve.get_attr("node")).or(default_node),
            vmid: recorded_vmid(planned, name, pve),
            storage: Some(known_str(pve.get_attr("storage")).unwrap_or("local-lvm")),
            image_storage: Some(known_str(pve.get_attr("image_storage")).unwrap_or("local")),
            bridges: vec![bridge],
            // node addresses are read with `network-get-interfaces`.
            agent: &["VM.GuestAgent.Audit"],
            agent_use: "read the node's addresses",
            extra_vm: &[],
        }
        .needs(out);
    }
    // Removed VMs: every node on delete, dropped nodes on update.
    let kept: Vec<&String> = planned_nodes.iter().map(|(k, _)| k).collect();
    for (name, pve) in pve_nodes(&req.prior_state) {
        if kept.contains(&&name) {
            continue;
        }
        let vmid = recorded_vmid(&req.prior_state, &name, pve);
        delete_vm(out, &format!("`{name}`"), vmid);
    }
    if change == Change::Delete {
        let images = req
            .prior_state
            .get_attr("proxmox_images")
            .and_then(Value::as_elements)
            .unwrap_or_default();
        for img in images {
            let storage = known_str(img.get_attr("volume")).and_then(|v| v.split(':').next());
            if let Some(s) = storage {
                out.push(Need::path(
                    format!("/storage/{s}"),
                    &["Datastore.Allocate"],
                    "delete the downloaded Talos disk images",
                ));
            }
        }
    }
}
