mod common;

use waddle_teleport::{github_connector, payload, render, Secret};

#[test]
fn teleport_yaml_roles_and_seed_payload() {
    let s = common::sample();
    let r = render(&s).unwrap();
    insta::assert_snapshot!("sample_teleport_yaml", r.teleport_yaml);
    insta::assert_snapshot!("sample_roles_yaml", r.roles_yaml);
    insta::assert_snapshot!("sample_config_hash", r.config_hash);
    let p = payload(&r, s.kubernetes);
    let files: Vec<String> = p
        .files
        .iter()
        .map(|f| format!("# {} {} {}\n{}", f.path, f.owner, f.permissions, f.content))
        .collect();
    insta::assert_snapshot!(
        "sample_payload",
        format!(
            "packages: {:?}\n{}\ncommands: {:?}",
            p.packages,
            files.join(""),
            p.commands
        )
    );
}

#[test]
fn minimal_node_has_no_kube_acme_or_apps() {
    let mut s = common::sample();
    s.kubernetes = false;
    s.acme_email = None;
    s.proxy_protocol = false;
    s.local_auth = true;
    s.proxmox_ui_uri = None;
    s.apps.clear();
    s.ssh_labels.clear();
    let r = render(&s).unwrap();
    insta::assert_snapshot!("minimal_teleport_yaml", r.teleport_yaml);
    let p = payload(&r, false);
    assert!(
        p.commands[1][2] == "systemctl restart teleport",
        "{:?}",
        p.commands
    );
}

#[test]
fn the_connector_carries_the_secret_only_where_asked() {
    let s = common::sample();
    let doc = github_connector(&s, &Secret::new("s3cr3t-value")).unwrap();
    insta::assert_snapshot!("sample_connector", doc.expose());
    assert_eq!(format!("{doc:?}"), "Secret(***)");
    let r = render(&s).unwrap();
    let p = payload(&r, true);
    let everything = format!("{r:?}{p:?}");
    assert!(!everything.contains("s3cr3t-value"));
}

#[test]
fn the_hash_changes_with_every_part() {
    let base = render(&common::sample()).unwrap().config_hash;
    let mut s = common::sample();
    s.github.teams_to_roles[0].team = "ops".into();
    assert_ne!(render(&s).unwrap().config_hash, base);
    let mut s = common::sample();
    s.roles
        .get_mut("platform-admin")
        .unwrap()
        .logins
        .push("x".into());
    assert_ne!(render(&s).unwrap().config_hash, base);
    let mut s = common::sample();
    s.apps[0].uri = "tcp://10.10.0.11:50000".into();
    assert_ne!(render(&s).unwrap().config_hash, base);
}
