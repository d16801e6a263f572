//! The provider driven in process (its RPC handlers, no CLI) against a PVE emulator: shared
//! by the test targets that need it (`mod inproc;`). It lives here, not in the
//! `waddle-acceptance` library, because only the tests depend on the provider crate.
//! [`talos`] is the same for `waddle_talos_cluster` with the Talos emulator plugged in.

pub mod talos;

use std::net::Ipv4Addr;

use waddle_acceptance::harness::emulated;
use waddle_acceptance::pve::{EmulatorConfig, FaultConfig, PveEmulator};
use waddle_framework::provider::Provider;
use waddle_framework::testing::Harness;
use waddle_framework::{AttributePath, Value};
use waddle_provider::provider::{schema as provider_schema, NoEnv, WaddleProvider};

/// The PVE emulator on `ip` with the bridge `vmbr1` and `faults`.
pub async fn emulator(ip: Ipv4Addr, faults: FaultConfig) -> PveEmulator {
    emulated::emulator(
        EmulatorConfig::builder()
            .ip(ip)
            .bridge("vmbr1")
            .faults(faults)
            .build(),
    )
    .await
}

/// A provider configured for `emu` (endpoint, token, CA, node).
pub async fn harness(emu: &PveEmulator) -> Harness {
    harness_of(WaddleProvider::with_env(NoEnv), emu).await
}

/// `provider` (the waddle provider's configuration schema) configured for `emu`.
pub async fn harness_of<P: Provider>(provider: P, emu: &PveEmulator) -> Harness {
    let h = Harness::new(provider);
    let mut pc = provider_schema().null_value();
    for (k, v) in [
        ("endpoint", emu.endpoint()),
        ("api_token", emu.api_token().expect("token")),
        ("ca_cert", emu.ca_pem().to_string()),
        ("node", emu.node().to_string()),
    ] {
        pc.set_path(&AttributePath::attr(k), Value::from(v.as_str()));
    }
    let d = h.configure(pc).await;
    assert!(!d.has_errors(), "{d:?}");
    h
}

/// A Proxmox client of `emu`'s API token.
pub fn client(emu: &PveEmulator) -> waddle_proxmox::Client {
    let mut cfg = waddle_proxmox::ClientConfig::new(
        emu.endpoint(),
        waddle_proxmox::Auth::api_token(&emu.api_token().expect("token")).expect("token"),
    );
    cfg.ca_cert_pem = Some(emu.ca_pem().to_string());
    waddle_proxmox::Client::new(cfg).expect("client")
}

/// Refreshes `state` of a `type_name` resource, then plans `config` over it: no error, no
/// replacement and nothing to change. The state read back.
pub async fn refresh_then_empty_plan(
    h: &Harness,
    type_name: &str,
    state: &Value,
    config: &Value,
) -> Value {
    let r = h.read(type_name, state).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let p = h.plan(type_name, &r.state, config).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    assert!(p.requires_replace.is_empty(), "{:?}", p.requires_replace);
    assert!(
        p.planned_state.equals(&r.state),
        "the plan after refresh is empty"
    );
    r.state
}
