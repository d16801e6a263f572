//! The smallest VM-backed resource one can write on the shared VM layer
//! (`waddle_provider::resources::vm`), kept as a fixture of ARCHITECTURE.md's "Adding a
//! resource" checklist: a Debian VM with one NIC whose payload is one file, `/etc/motd`,
//! written by cloud-init, checked through the guest agent, updated in place and refreshed
//! from the guest. Everything else (schema fragment, placement, image, seed ISO,
//! create/read/update/delete/import, ownership) comes from the layer.
//!
//! The resource is the part between the `// --- the resource ---` markers; the test drives
//! it in process against the PVE emulator: create, an empty plan, drift repaired in place, a
//! new payload in place (same VMID), import by `<node>/<vmid>` read back equal, destroy, and
//! nothing left. Addresses 127.40.97.x.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waddle_acceptance::harness::emulated::{self, runtime};
use waddle_acceptance::pve::{DebianAppliance, EmulatorConfig, PveEmulator};
use waddle_acceptance::teleport::GuestFs;
use waddle_framework::prelude::*;
use waddle_framework::resource::Typed;
use waddle_framework::testing::Harness;
use waddle_provider::provider::{NoEnv, WaddleProvider};
use waddle_provider::resources::timeouts::{self, Deadline, TimeoutsModel};
use waddle_provider::resources::vm::resource::{NicAttrs, PayloadError};
use waddle_provider::resources::vm::{self, NicLayout, Vm, VmDefaults, VmResource};
use waddle_proxmox::cloud_config::{CloudConfig, SeedFile};
use waddle_proxmox::Guest;

#[allow(dead_code)] // the other helpers are for other targets
mod inproc;

// --- the resource ---

const DEFAULTS: VmDefaults = VmDefaults {
    name: "motd",
    ..VmDefaults::DEBIAN
};
const NICS: [NicLayout; 1] = [NicLayout {
    attr: "nic",
    address: "ip_address",
    iface: "ens18",
    has_gateway: true,
}];
const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: Duration::from_secs(300),
    update: Duration::from_secs(120),
    delete: Duration::from_secs(120),
};
const MOTD: &str = "/etc/motd";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MotdState {
    id: Option<String>,
    name: Option<String>,
    node: Option<String>,
    vmid: Option<u32>,
    storage: Option<String>,
    cores: Option<u32>,
    memory: Option<u64>,
    disk_size: Option<u32>,
    image_url: Option<String>,
    image_storage: Option<String>,
    dns_servers: Option<Vec<String>>,
    admin_user: Option<String>,
    ssh_authorized_keys: Option<Vec<String>>,
    seed_iso: Option<String>,
    timeouts: Option<TimeoutsModel>,
    nic: Option<NicAttrs>,
    ip_address: Option<String>,
    motd: Option<String>,
}

fn schema() -> Schema {
    let mut s = Schema::new("A Debian VM showing a message of the day.")
        .version(0)
        .attribute(
            "nic",
            vm::schema::nic_attribute(&NICS[0], ("10.10.0.9/24", "10.10.0.1"), "The NIC."),
        )
        .attribute(
            "motd",
            Attribute::string().required().description("/etc/motd."),
        )
        .attribute(
            timeouts::ATTR,
            timeouts::attribute(&TIMEOUTS, ["Create.", "Update.", "Delete."]),
        );
    for (name, a) in vm::schema::attributes(&DEFAULTS, &NICS) {
        s = s.attribute(name, a);
    }
    s
}

#[derive(Debug, Default, Clone, Copy)]
struct Motd;

#[async_trait]
impl VmResource for Motd {
    type State = MotdState;
    type Payload = String;

    const TYPE_NAME: &'static str = "waddle_motd";
    const LABEL: &'static str = "motd";
    const DEFAULTS: VmDefaults = DEFAULTS;
    const NICS: &'static [NicLayout] = &NICS;
    const TIMEOUTS: timeouts::Defaults = TIMEOUTS;
    const TAGS: &'static [&'static str] = &["motd"];
    const DESCRIPTION: &'static str = "waddle_motd (managed by OpenTofu/Terraform)";
    const INSTANCE_PREFIX: &'static str = "waddle-motd";
    const INPUTS_PATH: &'static str = "/etc/waddle-motd-inputs.json";
    const INVALID: &'static str = "Invalid motd";
    const COMPUTED: &'static [&'static str] = &[];
    const SEED_ISO_PREFIX: &'static str = "waddle-motd";

    fn schema(&self) -> Schema {
        schema()
    }
    /// Nothing to check beyond the schema and the shared VM inputs (checked around this).
    fn validate(&self, _config: &Value, _diags: &mut Diagnostics) {}
    /// Nothing to plan beyond the shared steps (node, id, address, replacement).
    fn plan(&self, _req: &PlanRequest, _plan: &mut Plan, _diags: &mut Diagnostics) {}
    fn prepare(&self, st: &MotdState) -> Result<String, PayloadError> {
        Ok(st.motd.clone().unwrap_or_default())
    }
    fn record(&self, _st: &mut MotdState, _p: &String) {}
    fn seed(&self, p: &String, ci: CloudConfig) -> CloudConfig {
        let motd = SeedFile {
            path: MOTD.into(),
            content: p.clone(),
            owner: "root:root".into(),
            permissions: "0644".into(),
            defer: false,
        };
        vm::lifecycle::with_payload(ci, Vec::new(), [motd], Vec::new())
    }
    async fn ready(&self, g: &Guest<'_>, _p: &String, d: Deadline) -> Result<(), PayloadError> {
        g.wait_until_succeeds(
            &["test", "-f", MOTD],
            Duration::from_millis(50),
            d.remaining(),
        )
        .await?;
        Ok(())
    }
    async fn apply(&self, g: &Guest<'_>, p: &String) -> Result<(), PayloadError> {
        Ok(g.write_file(MOTD, p).await?)
    }
    async fn refresh(&self, g: &Guest<'_>, st: &mut MotdState, diags: &mut Diagnostics) {
        match g.read_file(MOTD).await {
            Ok(live) => st.motd = Some(live.unwrap_or_default()),
            Err(e) => diags.warning("Cannot read /etc/motd", e.to_string()),
        }
    }
    /// The VM is stopped or gone: an empty motd, which the next plan writes again.
    fn forget(&self, st: &mut MotdState) {
        st.motd = Some(String::new());
    }
    fn importing(&self, st: &MotdState) -> bool {
        st.nic.is_none()
    }
}

// --- the resource ends; the test ---

/// The waddle provider with only the fixture resource.
struct FixtureProvider(WaddleProvider);

#[async_trait]
impl Provider for FixtureProvider {
    fn type_name(&self) -> &str {
        self.0.type_name()
    }
    fn schema(&self) -> Schema {
        self.0.schema()
    }
    async fn configure(
        &self,
        ctx: &Context,
        config: &Value,
        d: &mut Diagnostics,
    ) -> Option<ProviderData> {
        self.0.configure(ctx, config, d).await
    }
    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(Typed(Vm(Motd)))]
    }
}

const TYPE: &str = "waddle_motd";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";

async fn harness(emu: &PveEmulator) -> Harness {
    inproc::harness_of(FixtureProvider(WaddleProvider::with_env(NoEnv)), emu).await
}

fn config(motd: &str) -> Value {
    let st = MotdState {
        nic: Some(NicAttrs {
            bridge: "vmbr1".into(),
            cidr: "10.10.0.9/24".into(),
            gateway: Some("10.10.0.1".into()),
        }),
        ssh_authorized_keys: Some(vec![KEY.into()]),
        motd: Some(motd.into()),
        ..MotdState::default()
    };
    schema().from_typed(&st).expect("config")
}

async fn apply(h: &Harness, prior: &Value, config: &Value) -> Value {
    let p = h.plan(TYPE, prior, config).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    assert!(
        p.requires_replace.is_empty(),
        "in place: {:?}",
        p.requires_replace
    );
    let a = h.apply(TYPE, prior, config, &p.planned_state).await;
    assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
    a.state
}

fn guest_motd(emu: &PveEmulator, vmid: u32) -> String {
    let app = emu.appliance(vmid).expect("appliance");
    let deb = app
        .as_any()
        .downcast_ref::<DebianAppliance>()
        .expect("Debian guest");
    String::from_utf8_lossy(&deb.read(MOTD).expect("/etc/motd")).into_owned()
}

#[test]
fn a_minimal_vm_resource_lives_its_whole_life_on_the_shared_layer() {
    if emulated::skip_on_real_pve(
        "a_minimal_vm_resource_lives_its_whole_life_on_the_shared_layer",
        "inspects the emulated guest",
    ) {
        return;
    }
    runtime().block_on(async {
        let emu = emulated::emulator(
            EmulatorConfig::builder()
                .ip(Ipv4Addr::new(127, 40, 97, 1))
                .bridge("vmbr1")
                .build(),
        )
        .await;
        let h = harness(&emu).await;

        // Create: the payload is in the guest, written by cloud-init.
        let c1 = config("hello\n");
        let state = apply(&h, &Value::Null, &c1).await;
        let vmid = state
            .get_attr("vmid")
            .and_then(Value::as_i64)
            .expect("vmid") as u32;
        assert_eq!(guest_motd(&emu, vmid), "hello\n");
        assert_eq!(
            state.get_attr("id").and_then(Value::as_str),
            Some(format!("{}/{vmid}", emu.node()).as_str())
        );

        // Refresh, then an empty plan.
        let r = h.read(TYPE, &state).await;
        assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
        let p = h.plan(TYPE, &r.state, &c1).await;
        assert!(
            p.planned_state.equals(&r.state),
            "the plan after refresh is empty"
        );

        // Drift in the guest is read back and repaired in place.
        let app = emu.appliance(vmid).expect("appliance");
        let deb = app
            .as_any()
            .downcast_ref::<DebianAppliance>()
            .expect("Debian guest");
        std::fs::write(deb.host_path(MOTD).expect("path"), "changed by hand\n").expect("drift");
        let r = h.read(TYPE, &r.state).await;
        assert_eq!(
            r.state.get_attr("motd").and_then(Value::as_str),
            Some("changed by hand\n")
        );
        let state = apply(&h, &r.state, &c1).await;
        assert_eq!(guest_motd(&emu, vmid), "hello\n");

        // A new payload: in place, same VM.
        let c2 = config("bye\n");
        let state = apply(&h, &state, &c2).await;
        assert_eq!(
            state.get_attr("vmid").and_then(Value::as_i64),
            Some(i64::from(vmid))
        );
        assert_eq!(guest_motd(&emu, vmid), "bye\n");

        // Import by `<node>/<vmid>` reads back what apply recorded.
        let id = format!("{}/{vmid}", emu.node());
        let imported = h.import(TYPE, &id, None).await;
        assert!(
            !imported.diagnostics.has_errors(),
            "{:?}",
            imported.diagnostics
        );
        let read = h.read(TYPE, &imported.state).await;
        assert!(!read.diagnostics.has_errors(), "{:?}", read.diagnostics);
        let p = h.plan(TYPE, &read.state, &c2).await;
        assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
        assert!(
            p.requires_replace.is_empty(),
            "import plans clean: {:?}",
            p.requires_replace
        );
        for a in ["id", "vmid", "node", "nic", "motd", "seed_iso", "name"] {
            assert_eq!(read.state.get_attr(a), state.get_attr(a), "imported {a}");
        }

        // Destroy: nothing left.
        let p = h.plan(TYPE, &state, &Value::Null).await;
        let a = h.apply(TYPE, &state, &Value::Null, &p.planned_state).await;
        assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
        assert!(a.state.is_null());
        let vms: Vec<u32> = emu.vms().iter().map(|v| v.vmid).collect();
        let vols: Vec<String> = emu.volumes().into_iter().map(|v| v.volid).collect();
        assert!(
            vms.is_empty() && vols.is_empty(),
            "left behind: VMs {vms:?}, volumes {vols:?}"
        );
    });
}
