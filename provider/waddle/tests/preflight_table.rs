//! The preflight's requirement table against what PVE enforces: for every endpoint each
//! resource calls per kind of change, the `permissions.check` of the official PVE 9.1 API
//! schema (`../shared/specs/pve-9.1/apischema.json`, read at test time — test data, never
//! compiled into the provider) must pass with only the privileges the table requires. The
//! checks PVE documents in prose only (`user: all` + a description) are listed by hand below.
//! A table that drifts from the schema fails here.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use waddle_framework::{PlanRequest, Value};
use waddle_provider::preflight::needs::{needs, Change, Need, Target};

/// `$WADDLE_SPECS_DIR/pve-9.1/apischema.json`, else `shared/specs` found walking up from
/// this crate (the specs sit beside the repository).
fn schema() -> Json {
    let rel = "pve-9.1/apischema.json";
    let from_env = std::env::var("WADDLE_SPECS_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map(|d| std::path::PathBuf::from(d).join(rel));
    let path = from_env
        .or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .ancestors()
                .map(|d| d.join("shared/specs").join(rel))
                .find(|p| p.is_file())
        })
        .expect("the PVE API schema (shared/specs beside the repo, or WADDLE_SPECS_DIR)");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("apischema.json")
}

fn index(nodes: &Json, out: &mut BTreeMap<String, Json>) {
    for n in nodes.as_array().into_iter().flatten() {
        if let Some(p) = n.get("path").and_then(Json::as_str) {
            out.insert(p.to_string(), n.clone());
        }
        if let Some(c) = n.get("children") {
            index(c, out);
        }
    }
}

/// Concrete values of the scenario.
const VARS: &[(&str, &str)] = &[
    ("node", "pve"),
    ("vmid", "120"),
    ("zone", "waddle"),
    ("vnet", "vmbr1"),
    ("subnet", "waddle-10.10.0.0-24"),
    ("volume", "local:iso/seed-120.iso"),
    ("pos", "0"),
];

fn subst(path: &str, extra: &[(&str, &str)]) -> String {
    let mut p = path.to_string();
    for (k, v) in extra.iter().chain(VARS) {
        p = p.replace(&format!("{{{k}}}"), v);
    }
    p
}

/// The privileges a table grants: (path, privilege), propagating to sub-paths (a grant on
/// `/vms` holds on `/vms/120`), as a token holding exactly them via `propagate=1` ACLs.
struct Granted(Vec<(String, String)>);

impl Granted {
    fn from(needs: &[Need]) -> Self {
        let mut g = Vec::new();
        for n in needs {
            let grant = &n.any_of[0];
            let path = match &grant.target {
                Target::Path(p) => p.clone(),
                Target::Bridge(b) => format!("/sdn/zones/localnetwork/{b}"),
            };
            for p in &grant.privs {
                g.push((path.clone(), p.to_string()));
            }
        }
        Granted(g)
    }
    fn has(&self, path: &str, privilege: &str) -> bool {
        self.0.iter().any(|(p, x)| {
            x == privilege
                && (p == "/"
                    || path == p
                    || path.starts_with(&format!("{}/", p.trim_end_matches('/'))))
        })
    }
    /// Evaluate a schema `check` expression.
    fn eval(&self, check: &Json, extra: &[(&str, &str)]) -> Result<(), String> {
        let a = check.as_array().ok_or("check is not an array")?;
        match a.first().and_then(Json::as_str) {
            Some("perm") => {
                let path = subst(a[1].as_str().unwrap_or("/"), extra);
                let privs: Vec<&str> = a[2]
                    .as_array()
                    .map(|v| v.iter().filter_map(Json::as_str).collect())
                    .unwrap_or_default();
                let any = a.iter().skip(3).any(|x| x.as_str() == Some("any"));
                let ok = if any {
                    privs.iter().any(|p| self.has(&path, p))
                } else {
                    privs.iter().all(|p| self.has(&path, p))
                };
                ok.then_some(()).ok_or(format!(
                    "{} on {path}",
                    privs.join(if any { "|" } else { "," })
                ))
            }
            Some("and") => a[1..].iter().try_for_each(|c| self.eval(c, extra)),
            Some("or") => {
                let errs: Vec<String> = a[1..]
                    .iter()
                    .filter_map(|c| self.eval(c, extra).err())
                    .collect();
                if errs.len() < a.len() - 1 {
                    Ok(())
                } else {
                    Err(errs.join(" or "))
                }
            }
            other => Err(format!("unhandled check {other:?}")),
        }
    }
}

/// A call: method, schema path, extra variables, and the prose-only requirement (path,
/// privilege) PVE enforces in code when the schema has no `check`.
type Call = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [(&'static str, &'static str)],
);

const IMG: &[(&str, &str)] = &[("storage", "local")];
const DISK: &[(&str, &str)] = &[("storage", "local-lvm")];
const VNET_PROSE: &[(&str, &str)] = &[("/sdn/zones/waddle/vmbr1", "SDN.Allocate")];

/// `POST /nodes/{node}/qemu` (prose: VM.Allocate on the VM, one privilege per config key,
/// space on the disk storage, read access to the imported image, SDN.Use on the bridge).
const CREATE_VM_PROSE: &[(&str, &str)] = &[
    ("/vms/120", "VM.Allocate"),
    ("/vms/120", "VM.Config.CPU"),
    ("/vms/120", "VM.Config.Memory"),
    ("/vms/120", "VM.Config.HWType"),
    ("/vms/120", "VM.Config.Options"),
    ("/vms/120", "VM.Config.Disk"),
    ("/vms/120", "VM.Config.Network"),
    ("/storage/local-lvm", "Datastore.AllocateSpace"),
    ("/storage/local", "Datastore.Audit"),
    ("/sdn/zones/localnetwork/vmbr0", "SDN.Use"),
];
const RESOURCES_PROSE: &[(&str, &str)] = &[("/vms/120", "VM.Audit")];
const DELETE_VOLUME_PROSE: &[(&str, &str)] = &[("/storage/local", "Datastore.Allocate")];

const NETWORK_CREATE: &[Call] = &[
    ("POST", "/cluster/sdn/zones", &[], &[]),
    ("GET", "/cluster/sdn/zones/{zone}", &[], &[]),
    ("POST", "/cluster/sdn/vnets", &[], &[]),
    ("POST", "/cluster/sdn/vnets/{vnet}/subnets", &[], VNET_PROSE),
    ("PUT", "/cluster/sdn", &[], &[]),
];
const NETWORK_UPDATE: &[Call] = &[
    ("PUT", "/cluster/sdn/zones/{zone}", &[], &[]),
    ("PUT", "/cluster/sdn/vnets/{vnet}", &[], VNET_PROSE),
    (
        "PUT",
        "/cluster/sdn/vnets/{vnet}/subnets/{subnet}",
        &[],
        VNET_PROSE,
    ),
    ("PUT", "/cluster/sdn", &[], &[]),
];
const NETWORK_DELETE: &[Call] = &[
    (
        "DELETE",
        "/cluster/sdn/vnets/{vnet}/subnets/{subnet}",
        &[],
        VNET_PROSE,
    ),
    ("DELETE", "/cluster/sdn/vnets/{vnet}", &[], VNET_PROSE),
    ("DELETE", "/cluster/sdn/zones/{zone}", &[], &[]),
    ("PUT", "/cluster/sdn", &[], &[]),
];
const FIREWALL_READ: &[Call] = &[
    ("GET", "/cluster/firewall/options", &[], &[]),
    ("GET", "/nodes/{node}/firewall/options", &[], &[]),
    ("GET", "/nodes/{node}/firewall/rules", &[], &[]),
    ("GET", "/cluster/firewall/rules", &[], &[]),
    ("GET", "/cluster/firewall/ipset", &[], &[]),
    (
        "GET",
        "/cluster/firewall/ipset/{name}",
        &[("name", "ops")],
        &[],
    ),
    ("GET", "/cluster/firewall/aliases", &[], &[]),
    ("GET", "/nodes/{node}/network", &[], &[]),
    ("GET", "/cluster/firewall/groups", &[], &[]),
    (
        "GET",
        "/cluster/firewall/groups/{group}",
        &[("group", "ops")],
        &[],
    ),
];
const FIREWALL_WRITE: &[Call] = &[
    ("PUT", "/cluster/firewall/options", &[], &[]),
    ("POST", "/nodes/{node}/firewall/rules", &[], &[]),
    ("PUT", "/nodes/{node}/firewall/rules/{pos}", &[], &[]),
    ("DELETE", "/nodes/{node}/firewall/rules/{pos}", &[], &[]),
    ("POST", "/cluster/firewall/ipset", &[], &[]),
    (
        "POST",
        "/cluster/firewall/ipset/{name}",
        &[("name", "ops")],
        &[],
    ),
    (
        "DELETE",
        "/cluster/firewall/ipset/{name}/{cidr}",
        &[("name", "ops"), ("cidr", "192.0.2.1")],
        &[],
    ),
    (
        "DELETE",
        "/cluster/firewall/ipset/{name}",
        &[("name", "ops")],
        &[],
    ),
];
const VM_CREATE_CALLS: &[Call] = &[
    ("GET", "/nodes/{node}/storage/{storage}/content", IMG, &[]),
    (
        "POST",
        "/nodes/{node}/storage/{storage}/download-url",
        IMG,
        &[],
    ),
    ("POST", "/nodes/{node}/qemu", DISK, CREATE_VM_PROSE),
    ("GET", "/cluster/resources", &[], RESOURCES_PROSE),
    ("GET", "/nodes/{node}/qemu/{vmid}/config", &[], &[]),
    ("PUT", "/nodes/{node}/qemu/{vmid}/resize", &[], &[]),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start", &[], &[]),
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current", &[], &[]),
];
const SNI_CREATE_EXTRA: &[Call] = &[
    ("POST", "/nodes/{node}/storage/{storage}/upload", IMG, &[]),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/config",
        &[],
        &[("/vms/120", "VM.Config.CDROM")],
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping", &[], &[]),
];
/// HAProxy files swapped through the guest agent (create and update).
const GUEST_AGENT_WRITE: &[Call] = &[
    ("POST", "/nodes/{node}/qemu/{vmid}/agent/exec", &[], &[]),
    (
        "GET",
        "/nodes/{node}/qemu/{vmid}/agent/exec-status",
        &[],
        &[],
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/agent/file-write",
        &[],
        &[],
    ),
];
const SNI_UPDATE: &[Call] = &[
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current", &[], &[]),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/start", &[], &[]),
];
const VM_DELETE_CALLS: &[Call] = &[
    ("GET", "/nodes/{node}/qemu/{vmid}/status/current", &[], &[]),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/shutdown",
        &[],
        &[],
    ),
    ("POST", "/nodes/{node}/qemu/{vmid}/status/stop", &[], &[]),
    ("DELETE", "/nodes/{node}/qemu/{vmid}", &[], &[]),
    (
        "DELETE",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        IMG,
        DELETE_VOLUME_PROSE,
    ),
];
const TALOS_CREATE_EXTRA: &[Call] = &[(
    "GET",
    "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces",
    &[],
    &[],
)];

fn s(v: &str) -> Value {
    Value::string(v)
}

fn sni_state() -> Value {
    Value::object([
        ("node", s("pve")),
        ("vmid", Value::number(120)),
        ("storage", s("local-lvm")),
        ("image_storage", s("local")),
        ("public_nic", Value::object([("bridge", s("vmbr0"))])),
        ("private_nic", Value::object([("bridge", s("vmbr0"))])),
    ])
}

fn talos_state() -> Value {
    let pve = Value::object([
        ("node", s("pve")),
        ("vmid", Value::number(120)),
        ("storage", s("local-lvm")),
        ("image_storage", s("local")),
        ("bridge", s("vmbr0")),
    ]);
    Value::object([
        (
            "nodes",
            Value::Map([("cp1".to_string(), Value::object([("proxmox", pve)]))].into()),
        ),
        (
            "proxmox_images",
            Value::List(vec![Value::object([
                ("node", s("pve")),
                ("volume", s("local:import/talos.qcow2")),
            ])]),
        ),
    ])
}

fn table(type_name: &str, change: Change, state: &Value) -> Granted {
    let (prior, planned) = match change {
        Change::Create => (Value::Null, state.clone()),
        Change::Update => (state.clone(), state.clone()),
        Change::Delete => (state.clone(), Value::Null),
    };
    let req = PlanRequest {
        config: planned.clone(),
        prior_state: prior,
        proposed_new_state: planned.clone(),
    };
    Granted::from(&needs(type_name, change, &req, &planned, Some("pve")))
}

#[test]
fn requirement_table_covers_every_schema_permission_check() {
    let mut idx = BTreeMap::new();
    index(&schema(), &mut idx);
    let net = Value::object([("zone", s("waddle")), ("vnet", s("vmbr1"))]);
    let fw = Value::object([("node", s("pve"))]);
    let cases: Vec<(&str, Change, Value, Vec<&[Call]>)> = vec![
        (
            "waddle_host_firewall",
            Change::Create,
            fw.clone(),
            vec![FIREWALL_READ, FIREWALL_WRITE],
        ),
        (
            "waddle_host_firewall",
            Change::Update,
            fw.clone(),
            vec![FIREWALL_READ, FIREWALL_WRITE],
        ),
        (
            "waddle_host_firewall",
            Change::Delete,
            fw,
            vec![FIREWALL_READ, FIREWALL_WRITE],
        ),
        (
            "waddle_network",
            Change::Create,
            net.clone(),
            vec![NETWORK_CREATE],
        ),
        (
            "waddle_network",
            Change::Update,
            net.clone(),
            vec![NETWORK_UPDATE],
        ),
        ("waddle_network", Change::Delete, net, vec![NETWORK_DELETE]),
        (
            "waddle_sni_proxy",
            Change::Create,
            sni_state(),
            vec![VM_CREATE_CALLS, SNI_CREATE_EXTRA, GUEST_AGENT_WRITE],
        ),
        (
            "waddle_sni_proxy",
            Change::Update,
            sni_state(),
            vec![SNI_UPDATE, GUEST_AGENT_WRITE],
        ),
        (
            "waddle_sni_proxy",
            Change::Delete,
            sni_state(),
            vec![VM_DELETE_CALLS],
        ),
        (
            "waddle_talos_cluster",
            Change::Create,
            talos_state(),
            vec![VM_CREATE_CALLS, TALOS_CREATE_EXTRA],
        ),
        (
            "waddle_talos_cluster",
            Change::Delete,
            talos_state(),
            vec![VM_DELETE_CALLS],
        ),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for (type_name, change, state, calls) in cases {
        let granted = table(type_name, change, &state);
        for (method, path, extra, prose) in calls.into_iter().flatten() {
            let info = &idx
                .get(*path)
                .unwrap_or_else(|| panic!("{path} is not in the API schema"))["info"][method];
            assert!(info.is_object(), "{method} {path} is not in the API schema");
            let perms = &info["permissions"];
            if let Some(check) = perms.get("check") {
                checked += 1;
                if let Err(e) = granted.eval(check, extra) {
                    failures.push(format!("{type_name} {change:?}: {method} {path} needs {e}"));
                }
            } else {
                assert!(
                    !prose.is_empty() || perms.get("user").and_then(Json::as_str) == Some("all"),
                    "{method} {path}: no check and no prose requirement listed"
                );
            }
            for (p, privilege) in *prose {
                if !granted.has(p, privilege) {
                    failures.push(format!(
                        "{type_name} {change:?}: {method} {path} needs {privilege} on {p} (schema description)"
                    ));
                }
            }
        }
    }
    assert!(checked > 30, "only {checked} schema checks evaluated");
    assert!(
        failures.is_empty(),
        "table misses:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_checker_catches_a_missing_privilege() {
    // The same evaluation with one privilege taken away must fail (the test can fail).
    let mut idx = BTreeMap::new();
    index(&schema(), &mut idx);
    let mut granted = table("waddle_sni_proxy", Change::Create, &sni_state());
    granted.0.retain(|(_, p)| p != "VM.GuestAgent.Unrestricted");
    let check =
        &idx["/nodes/{node}/qemu/{vmid}/agent/exec"]["info"]["POST"]["permissions"]["check"];
    assert_eq!(
        granted.eval(check, &[]),
        Err("VM.GuestAgent.Unrestricted on /vms/120".to_string())
    );
}
