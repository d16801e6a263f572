mod common;

use waddle_teleport::{
    check_proxy_protocol, check_upgrade, validate, AppSpec, SniRoute, UpgradeError,
};

fn errors(s: &waddle_teleport::NodeSpec) -> Vec<String> {
    match validate(s) {
        Ok(()) => vec![],
        Err(e) => e.errors().iter().map(|e| e.path.to_string()).collect(),
    }
}

#[test]
fn the_sample_is_valid() {
    assert_eq!(errors(&common::sample()), Vec::<String>::new());
}

#[test]
fn bad_names_and_addresses_are_refused_at_their_paths() {
    let mut s = common::sample();
    s.cluster_name = "bad name!".into();
    s.public_addr = "https://teleport.waddle.social".into();
    s.domain = "".into();
    s.acme_email = Some("not-an-email".into());
    s.version = "v18.8.2".into();
    assert_eq!(
        errors(&s),
        [
            "teleport_version",
            "domain",
            "public_addr",
            "cluster_name",
            "acme_email"
        ]
    );
    let mut s = common::sample();
    s.public_addr = "teleport..waddle.social".into();
    assert_eq!(errors(&s), ["public_addr"]);
}

#[test]
fn github_needs_a_team_mapping_and_known_roles() {
    let mut s = common::sample();
    s.github.teams_to_roles.clear();
    let e = validate(&s).unwrap_err();
    assert_eq!(e.errors()[0].path.to_string(), "github.teams_to_roles");
    assert!(
        e.to_string().contains("at least one `teams_to_roles`"),
        "{e}"
    );
    let mut s = common::sample();
    s.github.teams_to_roles[0].roles.push("nosuchrole".into());
    assert_eq!(errors(&s), ["github.teams_to_roles[0].roles[2]"]);
}

#[test]
fn apps_uri_names_and_public_addresses() {
    let mut s = common::sample();
    let app = |name: &str, uri: &str, public: Option<&str>| AppSpec {
        name: name.into(),
        uri: uri.into(),
        public_addr: public.map(String::from),
        insecure_skip_verify: false,
        labels: Default::default(),
    };
    s.apps = vec![
        app(
            "grafana",
            "http://10.10.0.5:3000",
            Some("grafana.waddle.social"),
        ),
        app("db", "postgres://10.10.0.6:5432", None),
        app("grafana", "https://10.10.0.7", None),
        app("evil", "https://10.10.0.8", Some("evil.example.com")),
        app("proxmox", "https://10.10.0.9", None),
        app("talos", "tcp://10.10.0.10", None),
    ];
    assert_eq!(
        errors(&s),
        [
            "apps[1].uri",
            "apps[2].name",
            "apps[3].public_addr",
            "apps[4].name",
            "apps[5].uri"
        ]
    );
    let e = validate(&s).unwrap_err().to_string();
    assert!(e.contains("used twice (first at apps[0])"), "{e}");
    assert!(e.contains("outside the platform domain"), "{e}");
}

#[test]
fn proxy_protocol_must_match_the_routes_to_this_node() {
    let route = |backend: &str, pp: bool| SniRoute {
        hostnames: vec!["teleport.waddle.social".into()],
        backend: backend.into(),
        proxy_protocol: pp,
    };
    let routes = [route("10.10.0.9:443", false), route("10.10.0.2:3080", true)];
    assert!(check_proxy_protocol(true, "10.10.0.2", &routes).is_ok());
    let e = check_proxy_protocol(false, "10.10.0.2", &routes).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].index, 1);
    assert!(e[0]
        .to_string()
        .starts_with("sni_routes[1] sends a PROXY v2 header"));
}

#[test]
fn a_major_skip_is_refused_with_the_path_to_take() {
    assert!(check_upgrade("18.8.2", "18.9.0").is_ok());
    assert!(check_upgrade("18.8.2", "19.0.1").is_ok());
    assert!(check_upgrade("18.8.2", "18.1.0").is_ok());
    let e = check_upgrade("17.7.2", "19.1.0").unwrap_err();
    assert!(matches!(e, UpgradeError::SkipsMajor { .. }));
    assert!(
        e.to_string().contains("apply 18.x.y, then 19.1.0 in turn"),
        "{e}"
    );
    assert!(matches!(
        check_upgrade("19.0.0", "18.8.2"),
        Err(UpgradeError::MajorDowngrade { .. })
    ));
}
