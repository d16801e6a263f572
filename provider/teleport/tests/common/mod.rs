use std::collections::BTreeMap;

use waddle_teleport::{AppSpec, GithubSpec, NodeSpec, RoleSpec, TeamMapping};

pub fn sample() -> NodeSpec {
    let mut roles = BTreeMap::new();
    roles.insert(
        "platform-admin".to_string(),
        RoleSpec {
            logins: vec!["root".into(), "waddle".into()],
            kubernetes_groups: vec!["system:masters".into()],
            kubernetes_users: vec![],
            node_labels: [("*".to_string(), "*".to_string())].into(),
            app_labels: [("*".to_string(), "*".to_string())].into(),
            kubernetes_labels: [("*".to_string(), "*".to_string())].into(),
        },
    );
    NodeSpec {
        nodename: "teleport".into(),
        version: "18.8.2".into(),
        domain: "waddle.social".into(),
        public_addr: "teleport.waddle.social".into(),
        cluster_name: "teleport.waddle.social".into(),
        acme_email: Some("ops@waddle.social".into()),
        proxy_protocol: true,
        local_auth: false,
        github: GithubSpec {
            client_id: "Iv1.0123456789abcdef".into(),
            connector_name: "github".into(),
            teams_to_roles: vec![TeamMapping {
                organization: "waddle-social".into(),
                team: "admins".into(),
                roles: vec!["platform-admin".into(), "access".into()],
            }],
        },
        roles,
        ssh_labels: [("env".to_string(), "platform".to_string())].into(),
        kubernetes: true,
        proxmox_ui_uri: Some("https://10.10.0.1:8006".into()),
        apps: vec![AppSpec {
            name: "talos".into(),
            uri: "tcp://10.10.0.10:50000".into(),
            public_addr: None,
            insecure_skip_verify: false,
            labels: [("kind".to_string(), "talos".to_string())].into(),
        }],
    }
}
