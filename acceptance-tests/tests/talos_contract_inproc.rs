//! `waddle_talos_cluster` from Talos v1.12 to v1.13, driven in process against the PVE and
//! Talos emulators: the upgrade keeps rendering the v1.12 configuration contract (which the
//! upgraded nodes, validating against the v1.13 schema, accept) until `config_contract`
//! changes, which then re-renders every node's configuration for v1.13; a contract newer
//! than the Talos the nodes run is refused at plan with its attribute path.

#[allow(dead_code)] // not every helper is used here
mod inproc;

use inproc::talos::{cluster, config, TalosEnv as Env};
use waddle_acceptance::talos::UpgradeApi;
use waddle_framework::{AttributePath, Value};
use waddle_provider::resources::talos_cluster::{ClusterModel, TYPE_NAME};

const NET: u8 = 182;
const HOSTS: [u8; 4] = [11, 12, 13, 31];

async fn env() -> Env {
    inproc::talos::env(NET).await
}

fn model(talos: &str, contract: Option<&str>) -> ClusterModel {
    let nodes = HOSTS.iter().enumerate().map(|(i, host)| {
        if i < 3 {
            (format!("cp{}", i + 1), "controlplane", *host)
        } else {
            ("w1".to_string(), "worker", *host)
        }
    });
    ClusterModel {
        kubernetes_version: Some("1.35.0".into()),
        config_contract: contract.map(str::to_string),
        ..cluster(NET, format!("contract{NET}"), talos, nodes)
    }
}

impl Env {
    fn configs(&self) -> Vec<String> {
        HOSTS
            .iter()
            .map(|h| self.node(*h).config_yaml().expect("configured"))
            .collect()
    }
}

fn contract_of(state: &Value) -> Option<String> {
    state
        .get_attr("config_contract")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_v1_13_keeps_the_v1_12_contract_until_it_is_changed() {
    let e = env().await;
    let state = e
        .apply(&Value::Null, &model("v1.12.11", None))
        .await
        .expect("create");
    assert_eq!(contract_of(&state).as_deref(), Some("v1.12"));
    for c in e.configs() {
        assert!(!c.contains("grubUseUKICmdline"), "{c}");
    }

    // The contract cannot move before the nodes run v1.13: refused at its path.
    let both = config(&model("v1.13.9", Some("v1.13")));
    let p = e.h.plan(TYPE_NAME, &state, &both).await;
    let errs: Vec<_> = p.diagnostics.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errs.len(), 1, "{:?}", p.diagnostics);
    assert_eq!(
        errs[0].attribute,
        Some(AttributePath::attr("config_contract"))
    );
    assert!(
        errs[0].detail.contains("cp1 runs v1.12.11"),
        "{}",
        errs[0].detail
    );

    // Upgrade: every node to v1.13.9 through MachineService.Upgrade (they run v1.12), the
    // configurations still of the v1.12 contract, which v1.13 nodes validate and accept.
    let up = model("v1.13.9", None);
    let state = e.apply(&state, &up).await.expect("upgrade to v1.13");
    assert_eq!(contract_of(&state).as_deref(), Some("v1.12"));
    for h in HOSTS {
        assert_eq!(e.node(h).talos_version(), "v1.13.9", "{h}");
    }
    let log = e.fleet.upgrade_log();
    assert_eq!(log.len(), HOSTS.len(), "{log:?}");
    assert!(log.iter().all(|r| r.api == UpgradeApi::Machine), "{log:?}");
    for c in e.configs() {
        assert!(c.contains("installer:v1.13.9"), "{c}");
        assert!(!c.contains("grubUseUKICmdline"), "{c}");
        assert!(!c.contains("auditPolicy"), "{c}");
    }
    e.assert_empty_plan(&state, &up).await;

    // The contract moves: every configuration is re-rendered for v1.13, in place.
    let boots: Vec<String> = HOSTS.iter().map(|h| e.node(*h).boot_id()).collect();
    let moved = model("v1.13.9", Some("v1.13"));
    let state = e.apply(&state, &moved).await.expect("contract v1.13");
    assert_eq!(contract_of(&state).as_deref(), Some("v1.13"));
    for (i, c) in e.configs().iter().enumerate() {
        assert!(c.contains("grubUseUKICmdline: true"), "{c}");
        assert_eq!(c.contains("auditPolicy"), i < 3, "{c}");
    }
    let after: Vec<String> = HOSTS.iter().map(|h| e.node(*h).boot_id()).collect();
    assert_eq!(
        boots, after,
        "the contract change is applied without a reboot"
    );
    assert_eq!(
        e.fleet.upgrade_log().len(),
        HOSTS.len(),
        "no further upgrade"
    );
    e.assert_empty_plan(&state, &moved).await;
    // Leaving the attribute out afterwards keeps the contract.
    e.assert_empty_plan(&state, &model("v1.13.9", None)).await;

    e.destroy(&state).await;
}
