//! `waddle_talos_cluster` read against the PVE and Talos emulators: a Talos OS upgraded by
//! hand (outside waddle) is found by read (`node_versions`) and shows in the next plan; a
//! cluster whose bundle is `machine_secrets_wo` keeps no secret of it in state, reads,
//! finds configuration drift on the masked configurations, updates and is destroyed with
//! what the state keeps.

#[allow(dead_code)] // not every helper is used here
mod inproc;

use std::time::Duration;

use inproc::talos::{cluster, config, env, TalosEnv as Env};
use waddle_acceptance::talos::TalosNode;
use waddle_framework::{AttributePath, Value};
use waddle_provider::resources::talos_cluster::upgrade::UpgradeModel;
use waddle_provider::resources::talos_cluster::{ClusterModel, TYPE_NAME};
use waddle_talos::api::{Credentials, TalosClient, UpgradeRequest};
use waddle_talos::SecretsBundle;

impl Env {
    /// One control plane at `talos`.
    fn model(&self, talos: &str) -> ClusterModel {
        let net = self.net;
        ClusterModel {
            kubernetes_version: Some("1.35.0".into()),
            ..cluster(
                net,
                format!("drift{net}"),
                talos,
                [("cp1", "controlplane", 11)],
            )
        }
    }

    fn cp1(&self) -> TalosNode {
        self.node(11)
    }

    /// An admin Talos client of cp1 with the state's `client_configuration`.
    async fn try_client(&self, state: &Value) -> Option<TalosClient> {
        let cc = state.get_attr("client_configuration")?;
        let s = |k: &str| {
            cc.get_attr(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let creds = Credentials::new(
            s("ca_certificate"),
            s("client_certificate"),
            s("client_key"),
        );
        TalosClient::connect(self.cp1().endpoint()?, &creds, &Default::default())
            .await
            .ok()
    }

    async fn client(&self, state: &Value) -> TalosClient {
        self.try_client(state).await.expect("mTLS to cp1")
    }

    /// Waits until cp1 answers its Talos API with version `want` (after the reboot).
    async fn wait_version(&self, state: &Value, want: &str) {
        for _ in 0..600 {
            if let Some(c) = self.try_client(state).await {
                if c.version().await.is_ok_and(|v| v.tag == want) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "cp1 never answered as {want}: {}",
            self.cp1().talos_version()
        );
    }
}

fn node_version(state: &Value) -> (Option<String>, Option<String>) {
    let r = AttributePath::attr("node_versions").then_key("cp1");
    let get = |a: &str| {
        state
            .get_path(&r.clone().then_attr(a))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    (get("talos_version"), get("installer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_os_upgraded_by_hand_is_read_back_and_shows_in_the_next_plan() {
    let e = env(83).await;
    let m = e.model("v1.12.4");
    let state =
        e.h.plan_and_apply(TYPE_NAME, &Value::Null, &config(&m))
            .await
            .expect("create");
    // Nothing changed: read leaves node_versions as recorded.
    let r = e.h.read(TYPE_NAME, &state).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(
        r.state.equals(&state),
        "a read without drift changes nothing"
    );

    // `talosctl upgrade` by hand, outside waddle.
    e.client(&state)
        .await
        .upgrade(&UpgradeRequest {
            image: "ghcr.io/siderolabs/installer:v1.12.11".into(),
            preserve: true,
            ..Default::default()
        })
        .await
        .expect("upgrade by hand");
    e.wait_version(&state, "v1.12.11").await;

    let read = e.h.read(TYPE_NAME, &state).await;
    assert!(!read.diagnostics.has_errors(), "{:?}", read.diagnostics);
    assert_eq!(
        node_version(&read.state),
        (
            Some("v1.12.11".into()),
            Some("ghcr.io/siderolabs/installer:v1.12.11".into())
        )
    );
    // The configuration still says v1.12.4: going back is a downgrade, refused at plan.
    let p = e.h.plan(TYPE_NAME, &read.state, &config(&m)).await;
    let errs: Vec<_> = p.diagnostics.errors().collect();
    assert_eq!(errs.len(), 1, "{:?}", p.diagnostics);
    assert_eq!(
        errs[0].attribute,
        Some(AttributePath::attr("talos_version"))
    );
    assert!(errs[0].detail.contains("v1.12.11"), "{}", errs[0].detail);

    // Allowed, the apply rolls the node back to the configured version.
    let mut back = m.clone();
    back.upgrade = Some(UpgradeModel {
        allow_downgrade: Some(true),
        ..Default::default()
    });
    let p = e.h.plan(TYPE_NAME, &read.state, &config(&back)).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    let action = p
        .planned_state
        .get_path(
            &AttributePath::attr("node_status")
                .then_key("cp1")
                .then_attr("action"),
        )
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    assert!(action.contains("Talos v1.12.11 -> v1.12.4"), "{action}");
    let state =
        e.h.plan_and_apply(TYPE_NAME, &read.state, &config(&back))
            .await
            .expect("roll back");
    assert_eq!(e.cp1().talos_version(), "v1.12.4");
    assert_eq!(
        node_version(&state).0.as_deref(),
        Some("v1.12.4"),
        "the record follows the node"
    );
    let read = e.h.read(TYPE_NAME, &state).await;
    assert!(read.state.equals(&state), "no drift after the roll back");
    e.destroy(&state).await;
}

fn assert_no_secret(state: &Value, b: &SecretsBundle) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = format!("{state:?}");
    for s in waddle_talos::mask::bundle_secrets(b) {
        assert!(!text.contains(&s), "a secret of the bundle is in the state");
        assert!(
            !text.contains(&b64.encode(s.as_bytes())),
            "a base64 secret of the bundle is in the state"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_only_bundle_stays_out_of_state_through_create_read_update_and_destroy() {
    let e = env(84).await;
    let bundle = SecretsBundle::generate(&waddle_talos::SystemClock).expect("bundle");
    let yaml = bundle.to_yaml().expect("yaml");
    let with_wo = |m: &ClusterModel| {
        let mut m = m.clone();
        m.machine_secrets_wo_version = Some(1);
        let mut v = config(&m);
        v.set_path(
            &AttributePath::attr("machine_secrets_wo"),
            Value::from(yaml.as_str()),
        );
        v
    };
    let m = e.model("v1.12.11");
    let state =
        e.h.plan_and_apply(TYPE_NAME, &Value::Null, &with_wo(&m))
            .await
            .expect("create");
    for a in [
        "machine_secrets",
        "machine_secrets_wo",
        "machine_configurations",
    ] {
        assert_eq!(state.get_attr(a), Some(&Value::Null), "{a}");
    }
    assert_no_secret(&state, &bundle);
    // The node runs the cluster of this bundle.
    let applied = e.cp1().config_yaml().expect("cp1 is configured");
    assert!(applied.contains(&bundle.cluster_secret));
    // Read, then an empty plan.
    let r = e.h.read(TYPE_NAME, &state).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(
        r.state.equals(&state),
        "a read without drift changes nothing"
    );
    let p = e.h.plan(TYPE_NAME, &state, &with_wo(&m)).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    assert!(
        p.planned_state.equals(&state),
        "the plan after the apply is empty"
    );

    // A change made on the node by hand shows in the masked configuration after read.
    let changed = applied.replace("1.1.1.1", "9.9.9.9");
    assert_ne!(changed, applied);
    e.client(&state)
        .await
        .apply_configuration(&changed, waddle_talos::api::ApplyMode::Auto)
        .await
        .expect("out-of-band apply");
    let r = e.h.read(TYPE_NAME, &state).await;
    let masked = |s: &Value| {
        s.get_path(&AttributePath::attr("machine_configurations_masked").then_key("cp1"))
            .and_then(Value::as_str)
            .expect("masked configuration")
            .to_string()
    };
    assert!(masked(&r.state).contains("9.9.9.9"), "{}", masked(&r.state));
    assert_no_secret(&r.state, &bundle);
    // The plan puts it back; the apply re-applies the configuration.
    let state =
        e.h.plan_and_apply(TYPE_NAME, &r.state, &with_wo(&m))
            .await
            .expect("update");
    assert!(!masked(&state).contains("9.9.9.9"));
    assert!(!e
        .cp1()
        .config_yaml()
        .unwrap_or_default()
        .contains("9.9.9.9"));
    assert_no_secret(&state, &bundle);

    // Destroy works from what the state keeps (client_configuration).
    let gone = e.h.plan_and_apply(TYPE_NAME, &state, &Value::Null).await;
    assert!(gone.is_ok(), "{gone:?}");
    e.fleet.shutdown().await;
}
