use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use waddle_framework::prelude::*;
use waddle_framework::testing::Harness;
use waddle_proxmox::FirewallRule;

use super::model::*;
use super::plan::{evaluate, planned_node_rules, Conn, Outcome, World};
use super::validate::validate;
use super::*;
use crate::provider::{NoEnv, WaddleProvider};

fn rule(source: &str, dport: &str) -> RuleModel {
    RuleModel {
        kind: Some("in".into()),
        action: Some("ACCEPT".into()),
        source: Some(source.into()),
        proto: Some("tcp".into()),
        dport: Some(dport.into()),
        enabled: Some(true),
        ..Default::default()
    }
}

fn sample() -> FirewallState {
    let mut rules = BTreeMap::new();
    rules.insert("api".to_string(), rule("+ops", "8006"));
    let mut ssh = rule("198.51.100.23", "22");
    ssh.expires = Some("2026-02-01T18:00:00Z".into());
    ssh.description = Some("laptop".into());
    rules.insert("ssh".to_string(), ssh);
    FirewallState {
        id: Some("pve".into()),
        node: Some("pve".into()),
        enabled: Some(true),
        policy_in: Some("DROP".into()),
        policy_out: Some("ACCEPT".into()),
        rules: Some(rules),
        active_rules: None,
        ipset: Some(IpSetModel {
            name: "ops".into(),
            cidrs: vec!["203.0.113.7/32".into()],
        }),
        acknowledge_lockout_risk: Some(false),
        client_address: None,
        previous_options: Some(PreviousOptions {
            enabled: Some(false),
            policy_in: None,
            policy_out: None,
        }),
        timeouts: None,
    }
}

#[test]
fn schema_and_state_type_agree() {
    assert!(schema().check().is_empty(), "{:?}", schema().check());
    let mut full = sample();
    full.client_address = Some("203.0.113.7".into());
    full.timeouts = Some(TimeoutsModel {
        create: Some("1m".into()),
        update: Some("2m".into()),
        delete: Some("3m".into()),
    });
    full.previous_options = Some(PreviousOptions {
        enabled: Some(true),
        policy_in: Some("DROP".into()),
        policy_out: Some("ACCEPT".into()),
    });
    full.active_rules = Some(vec!["all".into()]);
    full.rules = Some(BTreeMap::from([(
        "all".to_string(),
        RuleModel {
            kind: Some("in".into()),
            action: Some("ACCEPT".into()),
            source: Some("10.0.0.0/8".into()),
            dest: Some("192.0.2.10".into()),
            proto: Some("tcp".into()),
            dport: Some("22".into()),
            sport: Some("1024:65535".into()),
            macro_name: Some("SSH".into()),
            iface: Some("vmbr0".into()),
            log: Some("info".into()),
            enabled: Some(true),
            description: Some("d".into()),
            expires: Some("2026-02-01T18:00:00Z".into()),
        },
    )]));
    assert_roundtrip(&schema(), &full);
    let d = &schema().block.description;
    assert!(
        d.contains("pve-firewall stop"),
        "emergency access documented"
    );
    assert!(d.contains("pvesh set /cluster/firewall/options --enable 0"));
}

#[test]
fn the_mark_carries_key_expiry_and_description() {
    let r = &sample().rules()["ssh"];
    let c = comment("ssh", r);
    assert_eq!(c, "waddle:ssh expires=2026-02-01T18:00:00Z laptop");
    let m = parse_mark(Some(&c)).unwrap();
    assert_eq!(m.key, "ssh");
    assert_eq!(m.expires.as_deref(), Some("2026-02-01T18:00:00Z"));
    assert_eq!(m.description.as_deref(), Some("laptop"));
    let m = parse_mark(Some("waddle:api")).unwrap();
    assert_eq!(
        (m.key.as_str(), m.expires, m.description),
        ("api", None, None)
    );
    for foreign in [
        None,
        Some("ssh from home"),
        Some("waddle"),
        Some("waddle:Bad Key"),
    ] {
        assert_eq!(parse_mark(foreign), None, "{foreign:?}");
    }
    // What Proxmox gives back maps to the same rule.
    let api = to_api("ssh", r);
    let back = from_api(&api, &parse_mark(api.comment.as_deref()).unwrap(), Some(r));
    assert_eq!(&back, r);
    // Defaults read as unset unless the state spelled them out.
    let mut plain = r.clone();
    plain.kind = None;
    plain.action = None;
    plain.enabled = None;
    let mark = parse_mark(api.comment.as_deref()).unwrap();
    assert_eq!(from_api(&to_api("ssh", &plain), &mark, None), plain);
    let mut ssh_upper = api.clone();
    ssh_upper.macro_name = Some("SSH".into());
    let mut ssh_lower = api;
    ssh_lower.macro_name = Some("ssh".into());
    assert!(same_rule(&ssh_upper, &ssh_lower));
}

#[test]
fn rfc3339_and_expiry() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_rfc3339("2026-02-01T18:00:00Z"), Ok(1_769_968_800));
    assert_eq!(
        parse_rfc3339("2026-02-01T19:00:00.250+01:00"),
        Ok(1_769_968_800)
    );
    for bad in [
        "2026-02-30T00:00:00Z",
        "2026-02-01 18:00:00Z",
        "tomorrow",
        "2026-02-01T18:00:00",
    ] {
        assert!(parse_rfc3339(bad).is_err(), "{bad}");
    }
    let r = &sample().rules()["ssh"];
    assert!(expired(r, 1_769_968_800));
    assert!(!expired(r, 1_769_968_799));
    assert!(!expired(&sample().rules()["api"], i64::MAX));
}

fn errors(v: &Value) -> Vec<String> {
    let mut d = Diagnostics::new();
    validate(v, &mut d);
    d.errors()
        .map(|e| {
            e.attribute
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn bad_input_is_refused_with_paths() {
    let ok = schema().from_typed(&sample()).unwrap();
    assert_eq!(errors(&ok), Vec::<String>::new());
    let mut s = sample();
    s.policy_in = Some("BLOCK".into());
    s.client_address = Some("pve.example".into());
    let mut rules = s.rules();
    rules.get_mut("api").unwrap().proto = None;
    rules.get_mut("ssh").unwrap().expires = Some("next week".into());
    rules.get_mut("ssh").unwrap().source = Some("10.0.0.300".into());
    rules.insert("Bad Key".into(), rule("10.0.0.0/8", "22"));
    s.rules = Some(rules);
    s.ipset = Some(IpSetModel {
        name: "1ops".into(),
        cidrs: vec!["0.0.0.0/0".into()],
    });
    let e = errors(&schema().from_typed(&s).unwrap());
    for want in [
        "policy_in",
        "client_address",
        "ipset.name",
        "ipset.cidrs[0]",
        r#"rules["api"].dport"#,
        r#"rules["ssh"].expires"#,
        r#"rules["ssh"].source"#,
        r#"rules["Bad Key"]"#,
    ] {
        assert!(e.contains(&want.to_string()), "missing {want} in {e:?}");
    }
}

fn world(policy: &str) -> World {
    World {
        enabled: true,
        policy_in: policy.into(),
        node_enabled: true,
        ..Default::default()
    }
}

fn conn(src: [u8; 4]) -> Conn {
    Conn {
        src: Some(Ipv4Addr::from(src)),
        dst: Some(Ipv4Addr::new(192, 0, 2, 10)),
        port: 8006,
    }
}

fn api_rule(action: &str, source: Option<&str>, dport: Option<&str>) -> FirewallRule {
    FirewallRule {
        direction: "in".into(),
        action: action.into(),
        enable: true,
        source: source.map(str::to_string),
        proto: dport.map(|_| "tcp".to_string()),
        dport: dport.map(str::to_string),
        ..Default::default()
    }
}

#[test]
fn the_guard_follows_the_host_input_chain() {
    let me = conn([203, 0, 113, 7]);
    assert!(matches!(evaluate(&world("DROP"), &me), Outcome::Dropped(_)));
    assert!(matches!(
        evaluate(&world("ACCEPT"), &me),
        Outcome::Accepted(_)
    ));
    let mut off = world("DROP");
    off.enabled = false;
    assert!(matches!(evaluate(&off, &me), Outcome::Accepted(_)));

    // An accepting rule for the source and port.
    let mut w = world("DROP");
    w.node_rules = vec![api_rule("ACCEPT", Some("203.0.113.0/24"), Some("8006"))];
    assert!(matches!(evaluate(&w, &me), Outcome::Accepted(_)));
    assert!(matches!(
        evaluate(&w, &conn([198, 51, 100, 1])),
        Outcome::Dropped(_)
    ));
    // ... but not for SSH only, and not when disabled.
    w.node_rules = vec![api_rule("ACCEPT", Some("203.0.113.7"), Some("22"))];
    assert!(matches!(evaluate(&w, &me), Outcome::Dropped(_)));
    let mut disabled = api_rule("ACCEPT", Some("203.0.113.7"), Some("8006"));
    disabled.enable = false;
    w.node_rules = vec![disabled];
    assert!(matches!(evaluate(&w, &me), Outcome::Dropped(_)));

    // Through an IP set; an unknown IP set cannot be relied on.
    w.node_rules = vec![api_rule("ACCEPT", Some("+ops"), Some("8006"))];
    assert!(matches!(evaluate(&w, &me), Outcome::Dropped(_)));
    w.ipsets.insert(
        "ops".into(),
        vec![(Ipv4Addr::new(203, 0, 113, 7), 32, false)],
    );
    assert!(matches!(evaluate(&w, &me), Outcome::Accepted(_)));

    // The management set (and the local network Proxmox adds to it) reaches 8006...
    let mut m = world("DROP");
    m.ipsets.insert(
        "management".into(),
        vec![(Ipv4Addr::new(203, 0, 113, 0), 24, false)],
    );
    assert!(matches!(evaluate(&m, &me), Outcome::Accepted(_)));
    let mut l = world("DROP");
    l.local_network = Some((Ipv4Addr::new(203, 0, 113, 0), 24));
    assert!(matches!(evaluate(&l, &me), Outcome::Accepted(_)));
    // ...after the host rules: a DROP above wins, and one that may match makes it unsure.
    m.node_rules = vec![api_rule("DROP", Some("203.0.113.7"), None)];
    assert!(matches!(evaluate(&m, &me), Outcome::Dropped(_)));
    m.node_rules = vec![api_rule("DROP", Some("some_alias"), None)];
    assert!(matches!(evaluate(&m, &me), Outcome::Unsure(_)));
    // An ACCEPT on an interface is not relied on.
    let mut on_iface = api_rule("ACCEPT", Some("203.0.113.7"), Some("8006"));
    on_iface.iface = Some("vmbr0".into());
    let mut i = world("DROP");
    i.node_rules = vec![on_iface];
    assert!(matches!(evaluate(&i, &me), Outcome::Dropped(_)));
    // Unknown source: only a rule without a source restriction accepts.
    let unknown = Conn { src: None, ..me };
    w.node_rules = vec![api_rule("ACCEPT", Some("+ops"), Some("8006"))];
    assert!(matches!(evaluate(&w, &unknown), Outcome::Dropped(_)));
    w.node_rules = vec![api_rule("ACCEPT", None, Some("8006"))];
    assert!(matches!(evaluate(&w, &unknown), Outcome::Accepted(_)));
    // Security groups are followed.
    let mut g = world("DROP");
    g.groups.insert(
        "ops".into(),
        vec![api_rule("ACCEPT", Some("203.0.113.7"), Some("8006"))],
    );
    g.node_rules = vec![FirewallRule {
        direction: "group".into(),
        action: "ops".into(),
        enable: true,
        ..Default::default()
    }];
    assert!(matches!(evaluate(&g, &me), Outcome::Accepted(_)));
}

#[test]
fn planned_rules_replace_ours_in_place_and_add_new_ones_on_top() {
    let foreign = api_rule("DROP", Some("192.0.2.0/24"), None);
    let mut old_api = to_api("api", &rule("10.0.0.1", "8006"));
    old_api.pos = Some(1);
    let gone = to_api("gone", &rule("10.0.0.2", "22"));
    let current = vec![foreign.clone(), old_api, gone];
    let planned = sample();
    let out = planned_node_rules(&current, &planned);
    let names: Vec<String> = out
        .iter()
        .map(|r| r.comment.clone().unwrap_or_else(|| "foreign".into()))
        .collect();
    assert_eq!(
        names,
        [
            "waddle:ssh expires=2026-02-01T18:00:00Z laptop",
            "foreign",
            "waddle:api"
        ]
    );
    assert_eq!(out[2].source.as_deref(), Some("+ops"), "updated in place");
}

async fn harness() -> Harness {
    let h = Harness::new(WaddleProvider::with_env(NoEnv));
    let d = h.configure(crate::provider::schema().null_value()).await;
    assert!(!d.has_errors(), "{d:?}");
    h
}

#[tokio::test]
async fn plans_take_active_from_the_clock() {
    let h = harness().await;
    let mut cfg = sample();
    cfg.id = None;
    cfg.previous_options = None;
    let rules = cfg.rules.as_mut().unwrap();
    rules.get_mut("ssh").unwrap().expires = Some("2000-01-01T00:00:00Z".into());
    rules.get_mut("api").unwrap().expires = Some("2999-01-01T00:00:00Z".into());
    let cfg = schema().from_typed(&cfg).unwrap();
    let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    let st: FirewallState = p.planned_state.unknown_as_null().to_typed().unwrap();
    assert_eq!(
        st.active_rules.clone().unwrap_or_default(),
        vec!["api".to_string()],
        "expired: never created"
    );
    assert!(p
        .diagnostics
        .iter()
        .any(|d| d.summary == "Rule already expired"));
    assert_eq!(st.id.as_deref(), Some("pve"));
}
