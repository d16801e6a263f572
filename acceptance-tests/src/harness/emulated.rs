//! What the tests that start the emulators in process share: the runtime they run on, the skip
//! when the process environment selects a real Proxmox VE, starting the PVE emulator and
//! plugging the Talos emulator into it ([`TalosTarget`] for the CLI tests that read it).
//! (Driving the provider in process against it is `tests/inproc/mod.rs`: only the tests
//! depend on the provider crate.)

use std::sync::Arc;

use super::notice;
use super::target::PveTarget;
use super::TestCase;
use crate::pve::{EmulatorConfig, PveEmulator};
use crate::talos::{appliance, FleetOptions, TalosFleet};

/// A multi-threaded runtime with two workers, I/O and time enabled.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Whether the process environment selects a real PVE (panics when its variables are
/// incomplete); a test that needs the in-process emulators then skips itself, which is said in
/// a `SKIPPED <test> (real PVE): <why>` notice.
pub fn skip_on_real_pve(test: &str, why: &str) -> bool {
    let real = PveTarget::real_from(|k| std::env::var(k).ok())
        .expect("real-PVE variables")
        .is_some();
    if real {
        notice(&format!("SKIPPED {test} (real PVE): {why}"));
    }
    real
}

/// The PVE emulator started with `config`; a failure to start fails the test.
pub async fn emulator(config: EmulatorConfig) -> PveEmulator {
    PveEmulator::start(config).await.expect("PVE emulator")
}

/// A Talos emulator with `options`, plugged into `emu` as the guest of every Talos VM it runs.
/// The caller shuts it down (`TalosFleet::shutdown`) at the end of the test.
pub fn talos_fleet_with(emu: &PveEmulator, options: FleetOptions) -> TalosFleet {
    let fleet = TalosFleet::new(options);
    appliance::register(emu.appliances(), fleet.clone());
    fleet
}

/// [`talos_fleet_with`] the default options.
pub fn talos_fleet(emu: &PveEmulator) -> TalosFleet {
    talos_fleet_with(emu, FleetOptions::default())
}

/// A CLI test's target whose checks read the Talos emulator: the runtime, the PVE emulator
/// selected as target and the Talos emulator plugged into it.
pub struct TalosTarget {
    pub rt: tokio::runtime::Runtime,
    pub target: PveTarget,
    pub emu: Arc<PveEmulator>,
    pub fleet: TalosFleet,
}

impl TalosTarget {
    /// The PVE emulator started with `config` and the Talos emulator plugged into it; `None`
    /// when the process environment selects a real PVE, which is said in a
    /// `SKIPPED <what> (real PVE): <why>` notice.
    pub fn start(what: &str, why: &str, config: EmulatorConfig) -> Option<TalosTarget> {
        let rt = runtime();
        let target = PveTarget::select(&rt, config);
        target.emulator_only(what, why)?;
        let emu = target.emulator_arc()?;
        let fleet = talos_fleet(&emu);
        Some(TalosTarget {
            rt,
            target,
            emu,
            fleet,
        })
    }

    /// A test case whose commands reach the target (`PROXMOX_VE_*`).
    pub fn case(&self) -> TestCase {
        TestCase::new().envs(self.target.cli_env())
    }

    /// Stops the Talos emulator (the PVE emulator stops when the target is dropped).
    pub fn shutdown(self) {
        self.rt.block_on(self.fleet.shutdown());
    }
}
