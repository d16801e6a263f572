//! Unit tests of `waddle_teleport_node`: schema and state agree, the golden v0 state, the
//! plan-time refusals with their paths, and plans.

use std::collections::BTreeMap;

use super::model::{App, Github, PrivateNic, Role, SniRoute, TeamMapping};
use super::*;
use crate::provider::ProviderConfig;
use crate::resources::vm::Vm;

pub(crate) fn sample() -> TeleportNodeState {
    TeleportNodeState {
        id: Some("pve/130".into()),
        seed_iso: Some("local:iso/waddle-teleport-130-seed.iso".into()),
        name: Some("teleport".into()),
        node: Some("pve".into()),
        vmid: Some(130),
        storage: Some("local-lvm".into()),
        cores: Some(2),
        memory: Some(2048),
        disk_size: Some(20),
        image_url: Some(crate::resources::vm::DEFAULT_IMAGE_URL.into()),
        image_storage: Some("local".into()),
        dns_servers: Some(vec!["1.1.1.1".into()]),
        admin_user: Some("waddle".into()),
        ssh_authorized_keys: Some(vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0mVwYk8lYy3oHfB8sOaZcLx9aJ7dQ ops".into(),
        ]),
        private_nic: Some(PrivateNic {
            bridge: "vmbr1".into(),
            cidr: Some("10.10.0.2/24".into()),
            gateway: Some("10.10.0.1".into()),
        }),
        teleport_version: Some(DEFAULT_VERSION.into()),
        domain: Some("waddle.social".into()),
        public_addr: Some("teleport.waddle.social".into()),
        cluster_name: Some("teleport.waddle.social".into()),
        acme_email: Some("ops@waddle.social".into()),
        proxy_protocol: Some(false),
        sni_routes: Some(vec![SniRoute {
            hostnames: vec!["teleport.waddle.social".into()],
            backend: "10.10.0.2:3080".into(),
            proxy_protocol: Some(false),
            check: Some(true),
        }]),
        local_auth: Some(false),
        github: Some(Github {
            client_id: "Iv1.0123456789abcdef".into(),
            connector_name: Some("github".into()),
            teams_to_roles: vec![TeamMapping {
                organization: "waddle-social".into(),
                team: "admins".into(),
                roles: vec!["platform-admin".into(), "access".into()],
            }],
        }),
        github_client_secret: Some("0123456789abcdef0123456789abcdef01234567".into()),
        github_client_secret_wo: None,
        github_client_secret_wo_version: None,
        roles: Some(BTreeMap::from([(
            "platform-admin".to_string(),
            Role {
                logins: Some(vec!["root".into()]),
                kubernetes_groups: Some(vec!["system:masters".into()]),
                kubernetes_users: Some(vec!["admin".into()]),
                node_labels: Some(BTreeMap::from([("*".into(), "*".into())])),
                app_labels: Some(BTreeMap::from([("*".into(), "*".into())])),
                kubernetes_labels: Some(BTreeMap::from([("*".into(), "*".into())])),
            },
        )])),
        ssh_labels: Some(BTreeMap::from([("env".into(), "platform".into())])),
        kubeconfig: Some("apiVersion: v1\nkind: Config\n".into()),
        apps: Some(vec![App {
            name: "talos".into(),
            uri: "tcp://10.10.0.10:50000".into(),
            public_addr: Some("talos.teleport.waddle.social".into()),
            insecure_skip_verify: Some(false),
            labels: Some(BTreeMap::from([("kind".into(), "talos".into())])),
        }]),
        proxmox_ui_uri: Some(DEFAULT_PROXMOX_UI.into()),
        timeouts: Some(crate::resources::timeouts::TimeoutsModel {
            create: Some("20m".into()),
            update: Some("15m".into()),
            delete: Some("5m".into()),
        }),
        web_url: Some("https://teleport.waddle.social".into()),
        ip_address: Some("10.10.0.2".into()),
        teleport_yaml: Some("version: v3\n".into()),
        config_hash: Some("ab".repeat(32)),
    }
}

fn config_value(f: impl FnOnce(&mut TeleportNodeState)) -> Value {
    let mut s = sample();
    for computed in [
        &mut s.id,
        &mut s.seed_iso,
        &mut s.web_url,
        &mut s.ip_address,
        &mut s.teleport_yaml,
        &mut s.config_hash,
    ] {
        *computed = None;
    }
    f(&mut s);
    schema().from_typed(&s).unwrap()
}

fn errors(v: &Value) -> Vec<(String, String)> {
    let mut d = Diagnostics::new();
    validate(v, &mut d);
    waddle_framework::testing::errors(&d)
}

fn paths(v: &Value) -> Vec<String> {
    errors(v).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn schema_and_state_type_agree() {
    assert!(schema().check().is_empty(), "{}", schema().check());
    let mut full = sample();
    full.github_client_secret_wo = Some("write-only".into());
    full.github_client_secret_wo_version = Some(1);
    assert_roundtrip(&schema(), &full);
    let s = schema();
    for a in s.block.attributes.values() {
        assert!(!a.description.is_empty());
    }
    for name in [
        "github_client_secret",
        "github_client_secret_wo",
        "kubeconfig",
    ] {
        assert!(s.block.attributes[name].sensitive, "{name} is sensitive");
    }
    assert!(s.block.attributes["github_client_secret_wo"].write_only);
    for name in ["private_nic", "vmid", "node", "ssh_authorized_keys"] {
        assert!(
            s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
            "{name}"
        );
    }
    for name in [
        "apps",
        "github",
        "roles",
        "kubeconfig",
        "teleport_version",
        "domain",
    ] {
        assert!(
            !s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
            "{name}"
        );
    }
}

#[test]
fn golden_v0_state_reads_back() {
    assert_eq!(schema().version, 0);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/waddle_teleport_node.v0.json");
    waddle_framework::testing::assert_golden_state(&schema(), &golden, &sample());
}

#[test]
fn debug_redacts_the_secrets() {
    let st = sample();
    let dbg = format!("{st:?}");
    assert!(
        !dbg.contains("0123456789abcdef0123456789abcdef01234567"),
        "{dbg}"
    );
    assert!(!dbg.contains("kind: Config"), "{dbg}");
    let p = model::payload_of(&st).unwrap();
    let dbg = format!("{p:?}");
    assert!(
        !dbg.contains("0123456789abcdef0123456789abcdef01234567"),
        "{dbg}"
    );
    assert!(!dbg.contains("kind: Config"), "{dbg}");
    // and the seed holds neither
    let ci = model::with_payload(
        crate::resources::vm::ops::cloud_config::<TeleportNode>(&st, 130, &[None]),
        &p,
    );
    let seed = format!("{:?}", waddle_proxmox::cloud_config::render(&ci).unwrap());
    assert!(
        seed.contains("teleport=18.8.2"),
        "the seed pins the version"
    );
    assert!(!seed.contains("0123456789abcdef0123456789abcdef01234567"));
    assert!(!seed.contains("kind: Config"));
}

#[test]
fn a_valid_configuration_has_no_errors() {
    assert_eq!(errors(&config_value(|_| {})), vec![]);
}

#[test]
fn bad_input_is_refused_with_its_path() {
    let v = config_value(|s| s.cluster_name = Some("not a name".into()));
    assert_eq!(paths(&v), ["cluster_name"]);
    let v = config_value(|s| s.public_addr = Some("https://teleport.waddle.social".into()));
    assert_eq!(paths(&v), ["public_addr"]);
    let v = config_value(|s| s.github.as_mut().unwrap().teams_to_roles.clear());
    assert_eq!(paths(&v), ["github.teams_to_roles"]);
    let v = config_value(|s| {
        let apps = s.apps.as_mut().unwrap();
        apps.push(App {
            name: "web".into(),
            uri: "ftp://10.10.0.5".into(),
            public_addr: Some("web.elsewhere.org".into()),
            insecure_skip_verify: None,
            labels: None,
        });
        apps.push(App {
            name: "talos".into(),
            uri: "tcp://10.10.0.11:50000".into(),
            public_addr: None,
            insecure_skip_verify: None,
            labels: None,
        });
    });
    let e = errors(&v);
    let p: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(p, ["apps[1].uri", "apps[1].public_addr", "apps[2].name"]);
    assert!(
        e[0].1
            .starts_with("apps[1].uri: app URI \"ftp://10.10.0.5\""),
        "{e:?}"
    );
    let v = config_value(|s| s.proxy_protocol = Some(true));
    let e = errors(&v);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "proxy_protocol");
    assert!(e[0].1.contains("sni_routes[0]"), "{e:?}");
    let v = config_value(|s| s.github_client_secret = None);
    assert_eq!(paths(&v), ["github_client_secret"]);
    let v = config_value(|s| s.github_client_secret_wo = Some("x".into()));
    assert_eq!(paths(&v), ["github_client_secret_wo"]);
}

#[test]
fn unknown_values_are_not_reported() {
    let mut v = config_value(|s| s.cluster_name = None);
    v.set_path(&AttributePath::attr("domain"), Value::unknown());
    v.set_path(&AttributePath::attr("sni_routes"), Value::unknown());
    v.set_path(
        &AttributePath::attr("github_client_secret"),
        Value::unknown(),
    );
    assert_eq!(errors(&v), vec![]);
    let mut v = config_value(|s| {
        s.github.as_mut().unwrap().teams_to_roles[0]
            .roles
            .push("ghost".into());
    });
    v.set_path(&AttributePath::attr("roles"), Value::unknown());
    assert_eq!(errors(&v), vec![], "roles unknown: cannot tell");
    // a known bad value next to unknowns is still reported
    v.set_path(
        &AttributePath::attr("cluster_name"),
        Value::from("bad name"),
    );
    assert_eq!(paths(&v), ["cluster_name"]);
}

fn provider_ctx(node: Option<&str>) -> Context {
    let cfg = ProviderConfig {
        node: node.map(str::to_string),
        ..Default::default()
    };
    Context::new(
        Default::default(),
        Some(std::sync::Arc::new(cfg) as ProviderData),
        "1.0.3",
    )
}

fn run_plan(config: &Value, prior: &Value, planned: Value) -> (Plan, Diagnostics) {
    let req = PlanRequest {
        config: config.clone(),
        prior_state: prior.clone(),
        proposed_new_state: planned.clone(),
    };
    let mut plan = Plan {
        state: planned,
        requires_replace: Vec::new(),
    };
    let mut d = Diagnostics::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(Vm(TeleportNode).modify_plan(&provider_ctx(Some("pve")), &req, &mut plan, &mut d));
    (plan, d)
}

fn rendered_state(f: impl FnOnce(&mut TeleportNodeState)) -> Value {
    let mut st = sample();
    f(&mut st);
    let r = waddle_teleport::render(&st.spec()).unwrap();
    st.set_rendered(&r);
    schema().from_typed(&st).unwrap()
}

#[test]
fn create_plan_derives_names_and_renders() {
    let config = config_value(|s| {
        s.public_addr = None;
        s.cluster_name = None;
    });
    let mut planned = config.clone();
    for k in [
        "id",
        "vmid",
        "public_addr",
        "cluster_name",
        "web_url",
        "ip_address",
        "teleport_yaml",
        "config_hash",
        "seed_iso",
    ] {
        planned.set_path(&AttributePath::attr(k), Value::unknown());
    }
    let (plan, d) = run_plan(&config, &Value::Null, planned);
    assert!(d.is_empty(), "{d}");
    let s = |k: &str| {
        plan.state
            .get_attr(k)
            .and_then(Value::as_str)
            .map(String::from)
    };
    assert_eq!(s("public_addr").as_deref(), Some("teleport.waddle.social"));
    assert_eq!(s("cluster_name").as_deref(), Some("teleport.waddle.social"));
    assert_eq!(
        s("web_url").as_deref(),
        Some("https://teleport.waddle.social")
    );
    assert_eq!(s("ip_address").as_deref(), Some("10.10.0.2"));
    let expected = waddle_teleport::render(&sample().spec()).unwrap();
    assert_eq!(s("config_hash"), Some(expected.config_hash));
    assert_eq!(s("teleport_yaml"), Some(expected.teleport_yaml));
}

#[test]
fn in_place_changes_replace_nothing_but_a_cluster_rename_does_and_says_why() {
    let prior = rendered_state(|_| {});
    // add an app, change a team mapping, rotate the kubeconfig, upgrade a minor
    let planned = rendered_state(|s| {
        s.apps.as_mut().unwrap().push(App {
            name: "grafana".into(),
            uri: "http://10.10.0.20:3000".into(),
            public_addr: None,
            insecure_skip_verify: None,
            labels: None,
        });
        s.github.as_mut().unwrap().teams_to_roles[0].team = "ops".into();
        s.kubeconfig = Some("apiVersion: v1\nkind: Config\n# rotated\n".into());
        s.teleport_version = Some("19.0.1".into());
    });
    let (plan, d) = run_plan(&planned, &prior, planned.clone());
    assert!(d.is_empty(), "{d}");
    assert!(
        plan.requires_replace.is_empty(),
        "{:?}",
        plan.requires_replace
    );
    assert_ne!(
        plan.state.get_attr("config_hash"),
        prior.get_attr("config_hash")
    );
    // a new cluster name replaces, with a warning at cluster_name
    let renamed = rendered_state(|s| s.cluster_name = Some("other.waddle.social".into()));
    let (plan, d) = run_plan(&renamed, &prior, renamed.clone());
    assert_eq!(
        plan.requires_replace,
        vec![AttributePath::attr("cluster_name")]
    );
    let w = d.iter().next().unwrap();
    assert!(
        !w.is_error() && w.summary.contains("replaces the VM"),
        "{d}"
    );
    assert_eq!(w.attribute, Some(AttributePath::attr("cluster_name")));
}

#[test]
fn a_major_version_skip_is_refused_at_plan() {
    let prior = rendered_state(|_| {});
    let planned = rendered_state(|s| s.teleport_version = Some("20.0.0".into()));
    let (_, d) = run_plan(&planned, &prior, planned.clone());
    let e = d.errors().next().expect("an error");
    assert_eq!(e.attribute, Some(AttributePath::attr("teleport_version")));
    assert!(
        e.detail.contains("apply 19.x.y, then 20.0.0 in turn"),
        "{}",
        e.detail
    );
}

#[test]
fn drift_plans_an_update_back() {
    let good = rendered_state(|_| {});
    let mut drifted = good.clone();
    drifted.set_path(
        &AttributePath::attr("config_hash"),
        Value::from("0".repeat(64)),
    );
    let config = config_value(|_| {});
    let mut proposed = drifted.clone();
    for k in ["config_hash", "teleport_yaml"] {
        proposed.set_path(&AttributePath::attr(k), Value::unknown());
    }
    let _ = config;
    let (plan, d) = run_plan(&good, &drifted, proposed);
    assert!(d.is_empty(), "{d}");
    assert_eq!(
        plan.state.get_attr("config_hash"),
        good.get_attr("config_hash")
    );
    assert!(plan.requires_replace.is_empty());
}
