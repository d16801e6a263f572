//! Fault suite: ownership marks and crash-consistent VM / seed ISO / disk image / SDN
//! lifecycles (`waddle_sni_proxy`, `waddle_talos_cluster`, `waddle_network`).
//!
//! The resources are driven in process through the provider's RPC handlers (no CLI) against
//! the PVE emulator (and, for Talos, the Talos emulator), on 127.40.9x.y / 127.20.9x.y. Each
//! test injects one kind of fault — a foreign VM with our VMID, lost responses on every
//! create (VM, disk, ISO, image), an error after the VM exists, the provider killed mid-create,
//! objects deleted by hand, a destroy whose VM is already gone — and checks: no object left
//! that the state does not know, foreign objects untouched, the next apply converges, the
//! plan after it is empty, and destroy leaves nothing.
//!
//! "Killed mid-create" drops the in-flight apply (no state comes back, exactly like a killed
//! CLI), once the emulator shows the VM exists. Every wait is bounded by a count.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use waddle_acceptance::harness::emulated::{self, runtime};
use waddle_acceptance::pve::{FaultConfig, FaultKind, FaultRule, PveEmulator};
use waddle_acceptance::talos::FleetOptions;
use waddle_framework::testing::Harness;
use waddle_framework::{AttributePath, Value};
use waddle_provider::resources::{sni_proxy, talos_cluster};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";

fn skip_on_real_pve(test: &str) -> bool {
    emulated::skip_on_real_pve(test, "injects faults into the in-process emulators")
}

/// The first request to `endpoint` meets `kind` (the ones after it are served).
fn fail_once(seed: u64, endpoint: &str, kind: FaultKind) -> FaultConfig {
    FaultConfig::new(seed).rule(FaultRule::new(endpoint, kind, 1.0).max_hits(1))
}

#[allow(dead_code)] // `inproc::talos` is for other targets
mod inproc;
use inproc::{client, emulator, harness, refresh_then_empty_plan};

/// Somebody else's VM ("prod-db", no waddle mark) with `vmid`.
async fn foreign_vm(emu: &PveEmulator, vmid: u32) -> BTreeMap<String, String> {
    let mut spec = waddle_proxmox::VmSpec::new("prod-db", 1, 512);
    spec.vmid = Some(vmid);
    spec.description = Some("the production database".into());
    spec.tags = vec!["prod".into()];
    client(emu)
        .create_vm(emu.node(), &spec)
        .await
        .expect("foreign VM");
    emu.vm(vmid).expect("foreign VM exists").config
}

/// Stop and delete a VM behind the provider's back (its seed ISO stays).
async fn delete_by_hand(emu: &PveEmulator, vmid: u32) {
    let c = client(emu);
    c.stop_vm(emu.node(), vmid).await.expect("stop");
    c.delete_vm(emu.node(), vmid).await.expect("delete");
    assert!(emu.vm(vmid).is_none(), "VM {vmid} deleted by hand");
}

fn vmid_of(state: &Value) -> u32 {
    state
        .get_attr("vmid")
        .and_then(Value::as_i64)
        .and_then(|v| u32::try_from(v).ok())
        .expect("vmid in state")
}

/// No VM and no VM disk or ISO left (downloaded `import` images are checked separately).
fn no_vm_or_iso_left(emu: &PveEmulator) -> Result<(), String> {
    let vms = emu.vmids();
    let vols: Vec<String> = emu
        .volumes()
        .into_iter()
        .filter(|v| v.content != "import")
        .map(|v| v.volid)
        .collect();
    if vms.is_empty() && vols.is_empty() {
        Ok(())
    } else {
        Err(format!("left behind: VMs {vms:?}, volumes {vols:?}"))
    }
}

/// Plan and apply a create of a `type_name` resource: the returned state (null when none came
/// back) and the errors (empty when none).
async fn create_state(h: &Harness, type_name: &str, cfg: &Value) -> (Value, String) {
    let p = h.plan(type_name, &Value::Null, cfg).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    let a = h
        .apply(type_name, &Value::Null, cfg, &p.planned_state)
        .await;
    let errors = if a.diagnostics.has_errors() {
        format!("{:?}", a.diagnostics)
    } else {
        String::new()
    };
    (a.state, errors)
}

/// Destroy `state` of a `type_name` resource (plan with a null config, apply): no errors.
async fn destroy_state(h: &Harness, type_name: &str, state: &Value) -> Value {
    let p = h.plan(type_name, state, &Value::Null).await;
    let a = h
        .apply(type_name, state, &Value::Null, &p.planned_state)
        .await;
    assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
    a.state
}

/// Poll (bounded by count, not time) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never happened: {what}");
}

#[path = "fault_ownership/network.rs"]
mod network;
#[path = "fault_ownership/sni.rs"]
mod sni;
#[path = "fault_ownership/talos.rs"]
mod talos;
