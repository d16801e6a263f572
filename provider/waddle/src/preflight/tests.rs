//! Unit tests of the permission preflight against a fake privilege source.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

struct Fake {
    key: String,
    /// path -> privileges; `None` = the read is forbidden.
    privs: Option<BTreeMap<String, Vec<&'static str>>>,
    vnets: BTreeMap<String, String>,
}

#[async_trait]
impl PrivilegeSource for Fake {
    fn key(&self) -> String {
        self.key.clone()
    }
    async fn privileges(&self, path: &str) -> Result<BTreeSet<String>, PreflightError> {
        match &self.privs {
            Some(m) => Ok(m
                .get(path)
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()),
            None => Err(PreflightError::Permissions {
                path: path.into(),
                message: "Permission check failed (403)".into(),
            }),
        }
    }
    async fn vnet_zone(&self, bridge: &str) -> Result<Option<String>, PreflightError> {
        Ok(self.vnets.get(bridge).cloned())
    }
}

fn fake(key: &str, privs: &[(&str, &[&'static str])]) -> Fake {
    Fake {
        key: key.into(),
        privs: Some(
            privs
                .iter()
                .map(|(p, v)| (p.to_string(), v.to_vec()))
                .collect(),
        ),
        vnets: [("wnet".to_string(), "waddle".to_string())].into(),
    }
}

fn s(v: &str) -> Value {
    Value::string(v)
}

fn sni_state(vmid: Option<i64>) -> Value {
    Value::object([
        ("node", s("pve")),
        (
            "vmid",
            vmid.map(Value::number).unwrap_or_else(Value::unknown),
        ),
        ("name", s("edge")),
        ("storage", s("local-lvm")),
        ("image_storage", s("local")),
        ("public_nic", Value::object([("bridge", s("vmbr0"))])),
        ("private_nic", Value::object([("bridge", s("wnet"))])),
    ])
}

fn req(prior: Value, proposed: Value) -> PlanRequest {
    PlanRequest {
        config: proposed.clone(),
        prior_state: prior,
        proposed_new_state: proposed,
    }
}

fn paths(needs: &[Need]) -> BTreeSet<(String, &'static str)> {
    needs
        .iter()
        .flat_map(|n| {
            let g = &n.any_of[0];
            let path = match &g.target {
                Target::Path(p) => p.clone(),
                Target::Bridge(b) => format!("bridge:{b}"),
            };
            g.privs.iter().map(move |p| (path.clone(), *p))
        })
        .collect()
}

const VMADMIN_NO_AGENT: &[&str] = &[
    "VM.Allocate",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.HWType",
    "VM.Config.Options",
    "VM.Config.Disk",
    "VM.Config.Network",
    "VM.Config.CDROM",
    "VM.PowerMgmt",
    "VM.Audit",
    "VM.GuestAgent.FileWrite",
];

#[test]
fn no_change_needs_nothing_and_delete_needs_less_than_create() {
    let st = sni_state(Some(120));
    let r = req(st.clone(), st.clone());
    let plan = Plan {
        state: st.clone(),
        requires_replace: vec![],
    };
    assert_eq!(change_of(&r, &plan), None);

    let create = needs::needs(
        "waddle_sni_proxy",
        Change::Create,
        &req(Value::Null, st.clone()),
        &st,
        None,
    );
    let delete = needs::needs(
        "waddle_sni_proxy",
        Change::Delete,
        &req(st.clone(), Value::Null),
        &Value::Null,
        None,
    );
    let (c, d) = (paths(&create), paths(&delete));
    assert!(c.contains(&("/vms/120".into(), "VM.GuestAgent.Unrestricted")));
    assert!(c.contains(&("/storage/local".into(), "Datastore.AllocateTemplate")));
    assert!(c.contains(&("bridge:wnet".into(), "SDN.Use")));
    assert!(!d.contains(&("/vms/120".into(), "VM.GuestAgent.Unrestricted")));
    assert!(d.contains(&("/vms/120".into(), "VM.Allocate")));
    assert!(d.len() < c.len(), "delete {d:?} vs create {c:?}");
    assert!(
        !d.iter().any(|(p, _)| p.starts_with("/sdn")),
        "a delete attaches no bridge: {d:?}"
    );
}

#[tokio::test]
async fn refusal_lists_every_missing_privilege_with_path_and_pveum_hint() {
    let st = sni_state(None);
    let needs = needs::needs(
        "waddle_sni_proxy",
        Change::Create,
        &req(Value::Null, st.clone()),
        &st,
        None,
    );
    let src = fake(
        "refusal",
        &[
            ("/vms", VMADMIN_NO_AGENT),
            ("/storage/local-lvm", &["Datastore.AllocateSpace"]),
            ("/storage/local", &["Datastore.Audit"]),
            ("/nodes/pve", &["Sys.AccessNetwork"]),
            ("/sdn/zones/localnetwork/vmbr0", &["SDN.Use"]),
        ],
    );
    let subject = Subject::Token {
        user: "tf@pve".into(),
        token: "plan".into(),
    };
    let mut diags = Diagnostics::new();
    report(&src, &subject, "waddle_sni_proxy", &needs, &mut diags).await;
    let errs: Vec<&Diagnostic> = diags.errors().collect();
    assert_eq!(errs.len(), 1, "one diagnostic: {diags:?}");
    let d = &errs[0].detail;
    for want in [
        "VM.GuestAgent.Unrestricted on /vms (",
        "Datastore.AllocateTemplate on /storage/local (",
        "SDN.Use on /sdn/zones/waddle/wnet (attach `edge` to bridge `wnet`)",
        "pveum role add WaddleProvider --privs \"Datastore.AllocateTemplate,SDN.Use,VM.GuestAgent.Unrestricted\"",
        "pveum acl modify /vms --tokens 'tf@pve!plan' --roles WaddleProvider",
        "pveum acl modify /sdn/zones/waddle/wnet --tokens 'tf@pve!plan' --roles WaddleProvider",
        "--users 'tf@pve'",
    ] {
        assert!(d.contains(want), "missing {want:?} in:\n{d}");
    }
    // Held privileges and met alternatives (Sys.AccessNetwork instead of Sys.Modify on /)
    // are not listed.
    assert!(!d.contains("Sys.Modify"), "{d}");
    assert!(!d.contains("VM.Allocate "), "{d}");
    assert!(!d.contains("/sdn/zones/localnetwork/vmbr0"), "{d}");
}

#[tokio::test]
async fn everything_held_passes_and_unreadable_permissions_warn() {
    let st = Value::object([("zone", s("wz")), ("vnet", s("wnet"))]);
    let needs = needs::needs(
        "waddle_network",
        Change::Create,
        &req(Value::Null, st.clone()),
        &st,
        None,
    );
    let subject = Subject::Token {
        user: "root@pam".into(),
        token: "t".into(),
    };
    let src = fake(
        "held",
        &[
            ("/sdn", &["SDN.Allocate"]),
            ("/sdn/zones", &["SDN.Allocate"]),
            ("/sdn/zones/wz", &["SDN.Allocate"]),
            ("/sdn/zones/wz/wnet", &["SDN.Allocate"]),
        ],
    );
    let mut diags = Diagnostics::new();
    report(&src, &subject, "waddle_network", &needs, &mut diags).await;
    assert!(diags.is_empty(), "{diags:?}");

    let forbidden = Fake {
        key: "forbidden".into(),
        privs: None,
        vnets: BTreeMap::new(),
    };
    let mut diags = Diagnostics::new();
    report(&forbidden, &subject, "waddle_network", &needs, &mut diags).await;
    assert!(!diags.has_errors(), "{diags:?}");
    let w: Vec<&Diagnostic> = diags.iter().collect();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].detail.contains("could not be read") && w[0].detail.contains("continues"),
        "{}",
        w[0].detail
    );
}
