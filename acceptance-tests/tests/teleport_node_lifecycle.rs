//! `waddle_teleport_node` driven in process (the provider's RPC handlers, no CLI) against the
//! PVE emulator, whose Debian guest runs the Teleport 18 stand-in (`waddle_acceptance::teleport`):
//! create, refresh and an empty plan; in place: an app, a team mapping, a kubeconfig rotation
//! and a major upgrade (same VMID); drift of the connector repaired; secrets never in the seed
//! ISO and only in root-only files; a wrong client secret fails clearly; lost answers on every
//! create step converge; a failing guest step is recorded and replaced; a shared image goes
//! with the last VM; destroy leaves nothing (VM, disks, seed ISO, image). Addresses
//! 127.40.95.x.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use waddle_acceptance::harness::emulated::{self, runtime};
use waddle_acceptance::pve::{
    read_iso_files, DebianAppliance, FaultConfig, FaultKind, FaultRule, PveEmulator,
};
use waddle_acceptance::teleport::{
    GuestFs, SANDBOX_GITHUB_CLIENT_ID, SANDBOX_GITHUB_CLIENT_SECRET,
};
use waddle_framework::testing::Harness;
use waddle_framework::Value;
use waddle_provider::resources::teleport_node::{
    schema, App, Github, PrivateNic, Role, TeamMapping, TeleportNodeState, TYPE_NAME,
};
use waddle_provider::resources::timeouts::TimeoutsModel;

#[allow(dead_code)] // `client` is for other targets
mod inproc;
use inproc::harness;

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";
const KUBECONFIG: &str =
    "apiVersion: v1\nkind: Config\nclusters: []\n# kubeconfig-secret-marker-1\n";

fn skip_on_real_pve(test: &str) -> bool {
    emulated::skip_on_real_pve(test, "inspects the emulated guest")
}

async fn emulator(ip: Ipv4Addr) -> PveEmulator {
    inproc::emulator(ip, FaultConfig::default()).await
}

fn base() -> TeleportNodeState {
    let mut s: TeleportNodeState = schema().null_value().to_typed().expect("null state");
    s.private_nic = Some(PrivateNic {
        bridge: "vmbr1".into(),
        cidr: None,
        gateway: None,
    });
    s.ssh_authorized_keys = Some(vec![KEY.into()]);
    s.domain = Some("example.org".into());
    s.acme_email = Some("ops@example.org".into());
    s.github = Some(Github {
        client_id: SANDBOX_GITHUB_CLIENT_ID.into(),
        connector_name: None,
        teams_to_roles: vec![TeamMapping {
            organization: "example-org".into(),
            team: "admins".into(),
            roles: vec!["platform-admin".into(), "access".into()],
        }],
    });
    s.github_client_secret_wo = Some(SANDBOX_GITHUB_CLIENT_SECRET.into());
    s.github_client_secret_wo_version = Some(1);
    s.roles = Some(BTreeMap::from([(
        "platform-admin".to_string(),
        Role {
            logins: Some(vec!["root".into()]),
            kubernetes_groups: Some(vec!["system:masters".into()]),
            ..Default::default()
        },
    )]));
    s.kubeconfig = Some(KUBECONFIG.into());
    s.apps = Some(vec![App {
        name: "talos".into(),
        uri: "tcp://10.10.0.10:50000".into(),
        public_addr: None,
        insecure_skip_verify: None,
        labels: None,
    }]);
    s.timeouts = Some(TimeoutsModel {
        create: Some("3m".into()),
        update: Some("3m".into()),
        delete: None,
    });
    s
}

fn cfg(s: &TeleportNodeState) -> Value {
    schema().from_typed(s).expect("config")
}

fn str_attr<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get_attr(k).and_then(Value::as_str)
}

fn vmid_of(v: &Value) -> u32 {
    v.get_attr("vmid").and_then(Value::as_i64).expect("vmid") as u32
}

fn with_guest<T>(emu: &PveEmulator, vmid: u32, f: impl FnOnce(&DebianAppliance) -> T) -> T {
    let app = emu.appliance(vmid).expect("appliance");
    let deb = app
        .as_any()
        .downcast_ref::<DebianAppliance>()
        .expect("Debian guest");
    f(deb)
}

async fn apply(h: &Harness, prior: &Value, config: &Value) -> Value {
    let p = h.plan(TYPE_NAME, prior, config).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    assert!(
        p.requires_replace.is_empty(),
        "in place: {:?}",
        p.requires_replace
    );
    let a = h.apply(TYPE_NAME, prior, config, &p.planned_state).await;
    assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
    a.state
}

/// Refresh, then the plan is empty.
async fn empty_plan(h: &Harness, state: &Value, config: &Value) -> Value {
    inproc::refresh_then_empty_plan(h, TYPE_NAME, state, config).await
}

async fn destroy(h: &Harness, state: &Value) {
    let p = h.plan(TYPE_NAME, state, &Value::Null).await;
    let a = h
        .apply(TYPE_NAME, state, &Value::Null, &p.planned_state)
        .await;
    assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
    assert!(a.state.is_null());
}

/// Destroys `state`; nothing is left.
async fn destroy_leaves_nothing(h: &Harness, emu: &PveEmulator, state: &Value) {
    destroy(h, state).await;
    nothing_left(emu);
}

fn nothing_left(emu: &PveEmulator) {
    let vms = emu.vmids();
    let vols: Vec<String> = emu.volumes().into_iter().map(|v| v.volid).collect();
    assert!(
        vms.is_empty() && vols.is_empty(),
        "left behind: VMs {vms:?}, volumes {vols:?}"
    );
}

/// A create that had to recover converged on one seed ISO with an empty plan after a
/// refresh; destroy then leaves nothing.
async fn converged_then_nothing_left(
    h: &Harness,
    emu: &PveEmulator,
    state: &Value,
    config: &Value,
) {
    let isos = emu.volids("iso");
    assert_eq!(isos.len(), 1, "one seed ISO: {isos:?}");
    let state = empty_plan(h, state, config).await;
    destroy_leaves_nothing(h, emu, &state).await;
}

#[test]
fn lifecycle_in_place_drift_secrets_and_nothing_left() {
    if skip_on_real_pve("lifecycle_in_place_drift_secrets_and_nothing_left") {
        return;
    }
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 95, 1)).await;
        let h = harness(&emu).await;
        let s0 = base();
        let config = cfg(&s0);
        let state = apply(&h, &Value::Null, &config).await;
        let vmid = vmid_of(&state);
        assert!(
            state
                .get_attr("github_client_secret_wo")
                .is_none_or(Value::is_null),
            "write-only never in state"
        );
        assert_eq!(
            str_attr(&state, "web_url"),
            Some("https://teleport.example.org")
        );
        assert_eq!(
            str_attr(&state, "cluster_name"),
            Some("teleport.example.org")
        );
        assert_eq!(str_attr(&state, "ip_address"), Some("10.10.0.2"));

        // The guest: the pinned version from the repository, running the rendered file.
        with_guest(&emu, vmid, |g| {
            assert_eq!(g.teleport().installed().as_deref(), Some("18.8.2"));
            assert!(g.teleport().running());
            let yaml = g
                .read("/etc/teleport.yaml")
                .map(|d| String::from_utf8_lossy(&d).into_owned());
            assert_eq!(yaml.as_deref(), str_attr(&state, "teleport_yaml"));
            assert_eq!(
                g.read("/etc/teleport/kubeconfig").as_deref(),
                Some(KUBECONFIG.as_bytes())
            );
            assert_eq!(
                g.file_mode("/etc/teleport/kubeconfig").as_deref(),
                Some("0600")
            );
            assert!(
                g.read("/etc/teleport/waddle-github.yaml").is_none(),
                "connector file removed"
            );
            let c = g
                .teleport()
                .resource("github", "github")
                .expect("connector");
            assert_eq!(c["spec"]["client_secret"], SANDBOX_GITHUB_CLIENT_SECRET);
            assert_eq!(
                c["spec"]["redirect_url"],
                "https://teleport.example.org/v1/webapi/github/callback"
            );
            assert!(g.teleport().resource("role", "platform-admin").is_some());
        });
        // No secret in the seed ISO; the seed pins the version.
        let seed = str_attr(&state, "seed_iso").expect("seed_iso");
        let iso = read_iso_files(&emu.volume_data(seed).expect("seed ISO data")).expect("ISO");
        let all: String = iso
            .files
            .values()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        assert!(
            all.contains("teleport=18.8.2") && all.contains("stable/v18"),
            "{all}"
        );
        assert!(
            !all.contains(SANDBOX_GITHUB_CLIENT_SECRET),
            "client secret in the seed"
        );
        assert!(
            !all.contains("kubeconfig-secret-marker"),
            "kubeconfig in the seed"
        );

        let state = empty_plan(&h, &state, &config).await;

        // In place: an app, a team mapping, a new kubeconfig, the next major.
        let mut s1 = s0.clone();
        s1.apps.as_mut().unwrap().push(App {
            name: "grafana".into(),
            uri: "http://10.10.0.20:3000".into(),
            public_addr: Some("grafana.example.org".into()),
            insecure_skip_verify: None,
            labels: None,
        });
        s1.github.as_mut().unwrap().teams_to_roles[0].team = "platform".into();
        s1.kubeconfig = Some(KUBECONFIG.replace("marker-1", "marker-2"));
        s1.teleport_version = Some("19.0.1".into());
        let config1 = cfg(&s1);
        let state1 = apply(&h, &state, &config1).await;
        assert_eq!(vmid_of(&state1), vmid, "same VM");
        assert_ne!(
            str_attr(&state1, "config_hash"),
            str_attr(&state, "config_hash")
        );
        with_guest(&emu, vmid, |g| {
            assert_eq!(g.teleport().installed().as_deref(), Some("19.0.1"));
            assert!(g.teleport().running());
            let k = g.read("/etc/teleport/kubeconfig").unwrap();
            assert!(
                String::from_utf8_lossy(&k).contains("marker-2"),
                "kubeconfig rotated"
            );
            let c = g.teleport().resource("github", "github").unwrap();
            assert_eq!(c["spec"]["teams_to_roles"][0]["team"], "platform");
            let yaml = String::from_utf8_lossy(&g.read("/etc/teleport.yaml").unwrap()).into_owned();
            assert!(yaml.contains("name: grafana"), "{yaml}");
            let marker =
                String::from_utf8_lossy(&g.read("/etc/teleport/waddle-config.sha256").unwrap())
                    .into_owned();
            assert_eq!(Some(marker.trim()), str_attr(&state1, "config_hash"));
        });
        let state1 = empty_plan(&h, &state1, &config1).await;

        // Drift: the connector changed behind our back shows on refresh and is repaired.
        with_guest(&emu, vmid, |g| {
            let mut c = g.teleport().resource("github", "github").unwrap();
            c["spec"]["teams_to_roles"][0]["roles"] = serde_json::json!(["editor"]);
            g.write(
                "/tmp/drift.yaml",
                serde_yaml_ng::to_string(&c).unwrap().as_bytes(),
            )
            .unwrap();
            let r = g
                .teleport()
                .exec(
                    g,
                    "tctl",
                    &["create".into(), "-f".into(), "/tmp/drift.yaml".into()],
                )
                .unwrap();
            assert_eq!(r.exitcode, 0, "{r:?}");
        });
        let r = h.read(TYPE_NAME, &state1).await;
        assert_ne!(
            str_attr(&r.state, "config_hash"),
            str_attr(&state1, "config_hash"),
            "drift is seen"
        );
        let state2 = apply(&h, &r.state, &config1).await;
        assert_eq!(vmid_of(&state2), vmid);
        with_guest(&emu, vmid, |g| {
            let c = g.teleport().resource("github", "github").unwrap();
            assert_eq!(c["spec"]["teams_to_roles"][0]["roles"][0], "platform-admin");
        });
        let state2 = empty_plan(&h, &state2, &config1).await;

        // Teleport stopped in the guest: a refresh shows it, the next apply starts it.
        with_guest(&emu, vmid, |g| {
            let inputs = g
                .read(waddle_provider::resources::teleport_node::INPUTS_PATH)
                .unwrap();
            let inputs = String::from_utf8_lossy(&inputs);
            assert!(
                !inputs.contains(SANDBOX_GITHUB_CLIENT_SECRET),
                "no secret in the kept inputs"
            );
            assert!(
                !inputs.contains("kubeconfig-secret-marker"),
                "no kubeconfig in the kept inputs"
            );
            g.teleport().stop();
        });
        let r = h.read(TYPE_NAME, &state2).await;
        assert_eq!(
            str_attr(&r.state, "config_hash"),
            Some(""),
            "a stopped Teleport is drift"
        );
        assert!(format!("{:?}", r.diagnostics).contains("Teleport is not running"));
        let state2 = apply(&h, &r.state, &config1).await;
        with_guest(&emu, vmid, |g| {
            assert!(g.teleport().running(), "started again")
        });
        let state2 = empty_plan(&h, &state2, &config1).await;

        // A major skip is refused at plan, with the path to take.
        let mut skip = s1.clone();
        skip.teleport_version = Some("17.7.2".into());
        let p = h.plan(TYPE_NAME, &state2, &cfg(&skip)).await;
        assert!(p.diagnostics.has_errors(), "a major downgrade is refused");

        destroy_leaves_nothing(&h, &emu, &state2).await;
    });
}

#[test]
fn a_wrong_client_secret_fails_clearly() {
    if skip_on_real_pve("a_wrong_client_secret_fails_clearly") {
        return;
    }
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 95, 2)).await;
        let h = harness(&emu).await;
        let mut s = base();
        s.github_client_secret_wo = None;
        s.github_client_secret_wo_version = None;
        s.github_client_secret = Some("not-the-registered-secret".into());
        let config = cfg(&s);
        let p = h.plan(TYPE_NAME, &Value::Null, &config).await;
        assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
        let a = h
            .apply(TYPE_NAME, &Value::Null, &config, &p.planned_state)
            .await;
        let text = format!("{:?}", a.diagnostics);
        assert!(
            text.contains("GitHub refused the OAuth app credentials"),
            "{text}"
        );
        assert!(text.contains("incorrect"), "{text}");
        assert!(
            !text.contains("not-the-registered-secret"),
            "the secret is not echoed: {text}"
        );
        // The VM exists and is recorded (tainted): destroy removes everything.
        assert!(!a.state.is_null(), "partial state recorded");
        destroy_leaves_nothing(&h, &emu, &a.state).await;
    });
}

#[test]
fn a_shared_image_goes_with_the_last_vm() {
    if skip_on_real_pve("a_shared_image_goes_with_the_last_vm") {
        return;
    }
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 95, 3)).await;
        let h = harness(&emu).await;
        let a = apply(&h, &Value::Null, &cfg(&base())).await;
        let mut other = base();
        other.name = Some("teleport-b".into());
        other.private_nic.as_mut().unwrap().cidr = Some("10.10.0.4/24".into());
        let b = apply(&h, &Value::Null, &cfg(&other)).await;
        assert_eq!(emu.downloads().len(), 1, "one download for both");
        destroy(&h, &a).await;
        assert_eq!(emu.volids("import").len(), 1, "still used by the other VM");
        destroy_leaves_nothing(&h, &emu, &b).await;
    });
}

/// The provider dies mid-create (the VM exists, no state came back): the next apply removes
/// what the first left (found by its mark, with its seed ISO and the image it recorded) and
/// converges on one VM; destroy leaves nothing.
#[test]
fn killed_mid_create_then_reapply_leaves_nothing() {
    if skip_on_real_pve("killed_mid_create_then_reapply_leaves_nothing") {
        return;
    }
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 95, 4)).await;
        let h = harness(&emu).await;
        let config = cfg(&base());
        let p = h.plan(TYPE_NAME, &Value::Null, &config).await;
        let apply_once = h.apply(TYPE_NAME, &Value::Null, &config, &p.planned_state);
        let killed = async {
            for _ in 0..600 {
                if !emu.vms().is_empty() && !emu.volids("iso").is_empty() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the VM and its seed ISO never appeared");
        };
        tokio::select! {
            _ = apply_once => panic!("the create finished before it was killed"),
            _ = killed => {}
        }
        let orphan = emu.vms()[0].vmid;
        let state = apply(&h, &Value::Null, &config).await;
        assert_eq!(
            emu.vmids(),
            vec![vmid_of(&state)],
            "only the new VM (orphan {orphan} removed)"
        );
        converged_then_nothing_left(&h, &emu, &state, &config).await;
    });
}

/// The answers to the VM create, the seed ISO upload, the image download and the first
/// guest-agent file write and command are lost (the host acted on each): the create still
/// converges on one VM, one download and one seed ISO, with an empty plan after it, and
/// destroy leaves nothing.
#[test]
fn lost_answers_on_every_create_step_converge() {
    if skip_on_real_pve("lost_answers_on_every_create_step_converge") {
        return;
    }
    let endpoints = [
        "POST /nodes/{node}/qemu",
        "POST /nodes/{node}/storage/{storage}/upload",
        "POST /nodes/{node}/storage/{storage}/download-url",
        "POST /nodes/{node}/qemu/{vmid}/agent/file-write",
        "POST /nodes/{node}/qemu/{vmid}/agent/exec",
    ];
    let faults = endpoints.into_iter().fold(FaultConfig::new(11), |f, ep| {
        f.rule(FaultRule::new(ep, FaultKind::DropResponse, 1.0).max_hits(1))
    });
    runtime().block_on(async {
        let emu = inproc::emulator(Ipv4Addr::new(127, 40, 95, 5), faults).await;
        let h = harness(&emu).await;
        let config = cfg(&base());
        let state = apply(&h, &Value::Null, &config).await;
        let mut hit: Vec<usize> = emu.fault_log().into_iter().map(|f| f.rule).collect();
        hit.sort_unstable();
        assert_eq!(
            hit,
            (0..endpoints.len()).collect::<Vec<_>>(),
            "every answer was lost once: {:?}",
            emu.fault_log()
        );
        assert_eq!(emu.vmids(), vec![vmid_of(&state)], "one VM");
        assert_eq!(emu.downloads().len(), 1, "one image download");
        converged_then_nothing_left(&h, &emu, &state, &config).await;
    });
}

/// A guest-agent command fails on the host for every try while Teleport is being set up
/// (the VM and its seed ISO exist): the create fails naming the step, the returned state
/// records the VM and the ISO (tainted by the CLI), destroy leaves nothing, and a new
/// create converges.
#[test]
fn a_failing_guest_step_is_recorded_and_replaced() {
    if skip_on_real_pve("a_failing_guest_step_is_recorded_and_replaced") {
        return;
    }
    let faults = FaultConfig::new(12).rule(
        FaultRule::new(
            "POST /nodes/{node}/qemu/{vmid}/agent/exec",
            FaultKind::Error {
                status: 500,
                reason: "injected guest-agent failure".into(),
            },
            1.0,
        )
        .max_hits(1000),
    );
    runtime().block_on(async {
        let emu = inproc::emulator(Ipv4Addr::new(127, 40, 95, 6), faults).await;
        let h = harness(&emu).await;
        let mut s = base();
        // Fail in seconds rather than after the default create timeout.
        s.timeouts = Some(TimeoutsModel {
            create: Some("45s".into()),
            update: None,
            delete: None,
        });
        let config = cfg(&s);
        let p = h.plan(TYPE_NAME, &Value::Null, &config).await;
        assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
        let a = h
            .apply(TYPE_NAME, &Value::Null, &config, &p.planned_state)
            .await;
        let text = format!("{:?}", a.diagnostics);
        assert!(a.diagnostics.has_errors(), "the create fails");
        assert!(text.contains("injected guest-agent failure"), "{text}");
        assert!(!a.state.is_null(), "the VM that exists is in the state");
        assert_eq!(emu.vmids(), vec![vmid_of(&a.state)], "the VM is recorded");
        let seed = str_attr(&a.state, "seed_iso").map(str::to_string);
        let isos = emu.volids("iso");
        assert_eq!(
            isos,
            seed.into_iter().collect::<Vec<_>>(),
            "the seed ISO is recorded"
        );
        destroy_leaves_nothing(&h, &emu, &a.state).await;
        emu.set_faults(FaultConfig::default());
        let state = apply(&h, &Value::Null, &config).await;
        let state = empty_plan(&h, &state, &config).await;
        destroy_leaves_nothing(&h, &emu, &state).await;
    });
}
