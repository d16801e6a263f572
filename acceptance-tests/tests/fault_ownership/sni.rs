//! `waddle_sni_proxy`: the VM, its disk, its seed ISO.

use super::*;
use sni_proxy::{schema, PrivateNic, PublicNic, Route, SniProxyState, TYPE_NAME};
use waddle_provider::resources::timeouts::TimeoutsModel;

fn config(vmid: Option<u32>) -> Value {
    let mut s: SniProxyState = schema().null_value().to_typed().expect("null state");
    s.vmid = vmid;
    s.public_nic = Some(PublicNic {
        bridge: "vmbr0".into(),
        cidr: "203.0.113.10/24".into(),
        gateway: Some("203.0.113.1".into()),
    });
    s.private_nic = Some(PrivateNic {
        bridge: "vmbr1".into(),
        cidr: "10.10.0.10/24".into(),
    });
    s.ssh_authorized_keys = Some(vec![KEY.into()]);
    s.routes = Some(vec![Route {
        hostnames: vec!["a.example.org".into()],
        backend: "10.10.0.2:443".into(),
        proxy_protocol: None,
        check: None,
    }]);
    // Fail fast instead of the default 15 minutes when the VM never gets ready.
    s.timeouts = Some(TimeoutsModel {
        create: Some("3m".into()),
        update: Some("3m".into()),
        delete: None,
    });
    schema().from_typed(&s).expect("config")
}

fn start() -> tokio::runtime::Runtime {
    runtime()
}

/// Plan and apply a create; returns the state (null when none came back) and the errors.
async fn create(h: &Harness, cfg: &Value) -> (Value, String) {
    create_state(h, TYPE_NAME, cfg).await
}

/// Destroy `state` (plan with a null config, apply).
async fn destroy(h: &Harness, state: &Value) {
    assert!(destroy_state(h, TYPE_NAME, state).await.is_null());
}

/// After an apply: exactly the state's VM (running, started at host boot) and its seed ISO
/// exist, and read + plan are empty.
async fn converged(h: &Harness, emu: &PveEmulator, state: &Value, cfg: &Value) {
    let vmid = vmid_of(state);
    let vms = emu.vmids();
    assert_eq!(vms, vec![vmid], "only the state's VM exists");
    let vm = emu.vm(vmid).expect("VM");
    assert!(vm.running, "the VM runs");
    assert_eq!(vm.config.get("onboot").map(String::as_str), Some("1"));
    let seed = state.get_attr("seed_iso").and_then(Value::as_str);
    assert_eq!(
        emu.volids("iso"),
        seed.into_iter().map(str::to_string).collect::<Vec<_>>()
    );
    refresh_then_empty_plan(h, TYPE_NAME, state, cfg).await;
}

/// A configured VMID taken by somebody else's VM: refused with a message naming that VM,
/// which is left exactly as it was; nothing is created.
#[test]
fn foreign_vm_with_our_vmid_is_refused_and_left_alone() {
    if skip_on_real_pve("sni foreign_vm_with_our_vmid_is_refused_and_left_alone") {
        return;
    }
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 1), FaultConfig::default()).await;
        let before = foreign_vm(&emu, 150).await;
        let h = harness(&emu).await;
        let (state, errors) = create(&h, &config(Some(150))).await;
        assert!(errors.contains("prod-db"), "names the VM: {errors}");
        assert!(errors.contains("150"), "{errors}");
        assert!(state.is_null(), "nothing recorded");
        assert_eq!(emu.vm(150).expect("foreign VM").config, before);
        assert_eq!(emu.vms().len(), 1);
        assert!(emu.volids("iso").is_empty(), "{:?}", emu.volids("iso"));
    });
}

/// The answers to the VM create, the disk resize, the seed ISO upload and the image
/// download are lost (the server acted): the create still converges on one VM, one disk,
/// one ISO and one download, and destroy leaves nothing.
#[test]
fn lost_responses_on_every_create_converge() {
    if skip_on_real_pve("sni lost_responses_on_every_create_converge") {
        return;
    }
    let faults = [
        "POST /nodes/{node}/qemu",
        "PUT /nodes/{node}/qemu/{vmid}/resize",
        "POST /nodes/{node}/storage/{storage}/upload",
        "POST /nodes/{node}/storage/{storage}/download-url",
    ]
    .into_iter()
    .fold(FaultConfig::new(7), |f, ep| {
        f.rule(FaultRule::new(ep, FaultKind::DropResponse, 1.0).max_hits(1))
    });
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 2), faults).await;
        let h = harness(&emu).await;
        let cfg = config(None);
        let (state, errors) = create(&h, &cfg).await;
        assert_eq!(emu.fault_log().len(), 4, "{:?}", emu.fault_log());
        assert!(errors.is_empty(), "{errors}");
        converged(&h, &emu, &state, &cfg).await;
        assert_eq!(emu.downloads().len(), 1, "one image download");
        let disks = emu.volids("images").len();
        assert_eq!(disks, 1, "one disk");
        destroy(&h, &state).await;
        no_vm_or_iso_left(&emu).unwrap();
    });
}

/// The disk resize inside the VM create fails after the VM exists: the VM is recorded in
/// the returned state (tainted by the CLI), so replacing it and destroying leave nothing.
#[test]
fn error_after_the_vm_exists_is_recorded() {
    if skip_on_real_pve("sni error_after_the_vm_exists_is_recorded") {
        return;
    }
    let faults = fail_once(
        8,
        "PUT /nodes/{node}/qemu/{vmid}/resize",
        FaultKind::FailTask("resize failed: injected".into()),
    );
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 3), faults).await;
        let h = harness(&emu).await;
        let cfg = config(None);
        let (failed, errors) = create(&h, &cfg).await;
        assert!(errors.contains("resize failed"), "{errors}");
        assert!(!failed.is_null(), "the VM that exists is in the state");
        let vms = emu.vmids();
        assert_eq!(vms, vec![vmid_of(&failed)]);
        // Tainted: the next apply replaces it (destroy, then create).
        destroy(&h, &failed).await;
        no_vm_or_iso_left(&emu).unwrap();
        let (state, errors) = create(&h, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        converged(&h, &emu, &state, &cfg).await;
        destroy(&h, &state).await;
        no_vm_or_iso_left(&emu).unwrap();
    });
}

/// The provider dies mid-create (after the VM exists, before any state comes back): the
/// next apply removes what the first left (found by its mark) and converges on one VM.
#[test]
fn killed_mid_create_then_reapply() {
    if skip_on_real_pve("sni killed_mid_create_then_reapply") {
        return;
    }
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 4), FaultConfig::default()).await;
        // Somebody else's VM stays untouched throughout.
        let before = foreign_vm(&emu, 900).await;
        let h = harness(&emu).await;
        let cfg = config(None);
        let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
        let apply = h.apply(TYPE_NAME, &Value::Null, &cfg, &p.planned_state);
        let killed = async {
            until("the VM and its seed ISO exist", || {
                emu.vms().len() == 2 && !emu.volids("iso").is_empty()
            })
            .await;
        };
        tokio::select! {
            _ = apply => panic!("the create finished before it was killed"),
            _ = killed => {}
        }
        let orphan = emu
            .vms()
            .into_iter()
            .find(|v| v.vmid != 900)
            .expect("the orphan VM")
            .vmid;
        let (state, errors) = create(&h, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(
            emu.volids("iso").len(),
            1,
            "one seed ISO: {:?}",
            emu.volids("iso")
        );
        if vmid_of(&state) != orphan {
            assert!(
                emu.vm(orphan).is_none(),
                "the orphan VM {orphan} is removed"
            );
        }
        let vms = emu.vmids();
        assert_eq!(
            vms.len(),
            2,
            "one VM of ours beside the foreign one: {vms:?}"
        );
        assert_eq!(emu.vm(900).expect("foreign VM").config, before);
        destroy(&h, &state).await;
        assert_eq!(emu.vm(900).expect("foreign VM").config, before);
        let vms = emu.vmids();
        assert_eq!(vms, vec![900]);
        assert!(emu.volids("iso").is_empty(), "{:?}", emu.volids("iso"));
    });
}

/// The VM is deleted by hand: read keeps the state while the seed ISO exists, the plan
/// re-creates the VM, the old ISO is deleted, and the plan after it is empty.
#[test]
fn vm_deleted_by_hand_is_recreated_and_its_iso_not_leaked() {
    if skip_on_real_pve("sni vm_deleted_by_hand_is_recreated_and_its_iso_not_leaked") {
        return;
    }
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 5), FaultConfig::default()).await;
        let h = harness(&emu).await;
        let cfg = config(None);
        let (state, errors) = create(&h, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        let old_iso = emu.volids("iso");
        delete_by_hand(&emu, vmid_of(&state)).await;
        let r = h.read(TYPE_NAME, &state).await;
        assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
        assert!(!r.state.is_null(), "the seed ISO is still owned");
        let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
        assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
        assert!(!p.requires_replace.is_empty(), "the VM is re-created");
        destroy(&h, &r.state).await;
        no_vm_or_iso_left(&emu).unwrap();
        let (state, errors) = create(&h, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        converged(&h, &emu, &state, &cfg).await;
        assert_eq!(emu.volids("iso").len(), old_iso.len());
        destroy(&h, &state).await;
        no_vm_or_iso_left(&emu).unwrap();
    });
}

/// Destroy after the VM is already gone (refresh first, as the CLI does): the seed ISO is
/// deleted too.
#[test]
fn destroy_whose_vm_is_gone_deletes_the_iso() {
    if skip_on_real_pve("sni destroy_whose_vm_is_gone_deletes_the_iso") {
        return;
    }
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 6), FaultConfig::default()).await;
        let h = harness(&emu).await;
        let (state, errors) = create(&h, &config(None)).await;
        assert!(errors.is_empty(), "{errors}");
        delete_by_hand(&emu, vmid_of(&state)).await;
        let r = h.read(TYPE_NAME, &state).await;
        assert!(
            !r.state.is_null(),
            "read keeps the state: the ISO is still there"
        );
        destroy(&h, &r.state).await;
        no_vm_or_iso_left(&emu).unwrap();
        let r = h.read(TYPE_NAME, &r.state).await;
        assert!(r.state.is_null(), "nothing left: the resource is gone");
    });
}

/// The answer to the VM DELETE is lost while its task still runs: the client waits for that
/// task and sends no second DELETE.
#[test]
fn lost_delete_answer_sends_no_second_delete() {
    if skip_on_real_pve("sni lost_delete_answer_sends_no_second_delete") {
        return;
    }
    let faults = fail_once(
        9,
        "DELETE /nodes/{node}/qemu/{vmid}",
        FaultKind::DropResponse,
    );
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 7), faults).await;
        let h = harness(&emu).await;
        let (state, errors) = create(&h, &config(None)).await;
        assert!(errors.is_empty(), "{errors}");
        let vmid = vmid_of(&state);
        emu.clear_request_log();
        destroy(&h, &state).await;
        assert_eq!(emu.fault_log().len(), 1, "{:?}", emu.fault_log());
        let deletes = emu
            .request_log()
            .into_iter()
            .filter(|r| r.method == "DELETE" && r.path.ends_with(&format!("/qemu/{vmid}")))
            .count();
        assert_eq!(deletes, 1, "one DELETE of the VM");
        no_vm_or_iso_left(&emu).unwrap();
    });
}

/// An import (by plain VM id, as `import_state` builds it) reads back what Proxmox does not
/// know from the inputs the VM keeps: the plan after it is empty.
#[test]
fn import_ends_with_an_empty_plan() {
    if skip_on_real_pve("sni import_ends_with_an_empty_plan") {
        return;
    }
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 8), FaultConfig::default()).await;
        let h = harness(&emu).await;
        let cfg = config(None);
        let (state, errors) = create(&h, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        let mut imported = schema().null_value();
        imported.set_path(
            &AttributePath::attr("vmid"),
            Value::from(i64::from(vmid_of(&state))),
        );
        let state = refresh_then_empty_plan(&h, TYPE_NAME, &imported, &cfg).await;
        destroy(&h, &state).await;
        no_vm_or_iso_left(&emu).unwrap();
    });
}

/// Attaching the seed ISO fails after it is uploaded (the VM exists too): the returned state
/// records the VM and the ISO, so no object is left that it does not know; replacing it
/// converges with an empty plan, and destroy leaves nothing.
#[test]
fn error_after_the_iso_exists_is_recorded() {
    if skip_on_real_pve("sni error_after_the_iso_exists_is_recorded") {
        return;
    }
    let faults = fail_once(
        10,
        "PUT /nodes/{node}/qemu/{vmid}/config",
        FaultKind::Error {
            status: 500,
            reason: "injected config failure".into(),
        },
    );
    start().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 91, 9), faults).await;
        let h = harness(&emu).await;
        let cfg = config(None);
        let (failed, errors) = create(&h, &cfg).await;
        assert!(errors.contains("attaching the seed ISO"), "{errors}");
        let vms = emu.vmids();
        assert_eq!(vms, vec![vmid_of(&failed)], "the VM is recorded");
        let seed = failed.get_attr("seed_iso").and_then(Value::as_str);
        assert_eq!(
            emu.volids("iso"),
            seed.into_iter().map(str::to_string).collect::<Vec<_>>(),
            "the seed ISO is recorded"
        );
        // Tainted: the next apply replaces it (destroy, then create).
        destroy(&h, &failed).await;
        no_vm_or_iso_left(&emu).unwrap();
        let (state, errors) = create(&h, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        converged(&h, &emu, &state, &cfg).await;
        destroy(&h, &state).await;
        no_vm_or_iso_left(&emu).unwrap();
    });
}
