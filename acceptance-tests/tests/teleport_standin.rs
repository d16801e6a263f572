//! The Teleport 18 stand-in on its own: strict `teleport.yaml`, the apt repository at a pinned
//! version, start-time refusals (major skip, missing kubeconfig), serving only after a valid
//! start, `tctl create` checks, and GitHub's verdict on OAuth credentials.

use std::collections::BTreeMap;
use std::sync::Mutex;

use waddle_acceptance::teleport::{
    config, GuestFs, TeleportStandIn, SANDBOX_GITHUB_CLIENT_ID, SANDBOX_GITHUB_CLIENT_SECRET,
};

#[derive(Default)]
struct Fs(Mutex<BTreeMap<String, Vec<u8>>>);

impl GuestFs for Fs {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(path).cloned()
    }
    fn write(&self, path: &str, data: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().insert(path.into(), data.to_vec());
        Ok(())
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.0
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
            .cloned()
            .collect()
    }
}

const GOOD: &str = "version: v3
teleport:
  nodename: teleport
  data_dir: /var/lib/teleport
  diag_addr: 127.0.0.1:3000
  log:
    output: stderr
    severity: INFO
    format:
      output: text
auth_service:
  enabled: true
  cluster_name: teleport.example.org
  proxy_listener_mode: multiplex
  authentication:
    type: github
    connector_name: github
    local_auth: false
proxy_service:
  enabled: true
  web_listen_addr: 0.0.0.0:3080
  public_addr: teleport.example.org:443
  proxy_protocol: on
  acme:
    enabled: true
    email: ops@example.org
ssh_service:
  enabled: true
  labels:
    env: platform
app_service:
  enabled: true
  apps:
  - name: proxmox
    uri: https://10.10.0.1:8006
    public_addr: proxmox.example.org
    insecure_skip_verify: true
";

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn run(t: &TeleportStandIn, fs: &Fs, line: &str) -> waddle_acceptance::pve::ExecOutcome {
    let a = args(line);
    t.exec(fs, &a[0], &a[1..]).expect("a Teleport command")
}

fn installed(version: &str) -> (TeleportStandIn, Fs) {
    let (t, fs) = (TeleportStandIn::default(), Fs::default());
    let major = version.split('.').next().unwrap();
    fs.write(
        "/etc/apt/sources.list.d/teleport.list",
        format!("deb [signed-by=/usr/share/keyrings/teleport-archive-keyring.asc] https://apt.releases.teleport.dev/debian bookworm stable/v{major}\n").as_bytes(),
    )
    .unwrap();
    assert_eq!(run(&t, &fs, "curl -fsSL https://apt.releases.teleport.dev/gpg -o /usr/share/keyrings/teleport-archive-keyring.asc").exitcode, 0);
    assert_eq!(t.apt_update(&fs).exitcode, 0);
    let r = t.apt_install(&format!("teleport={version}"), false);
    assert_eq!(r.exitcode, 0, "{r:?}");
    (t, fs)
}

#[test]
fn the_reference_config_parses_and_unknown_keys_anywhere_stop_it() {
    let p = config::parse(GOOD).expect("valid");
    assert!(p.proxy_protocol);
    assert_eq!(p.connector_name, "github");
    for (bad, needle) in [
        (
            GOOD.replace(
                "  proxy_protocol: on\n",
                "  proxy_protocol: on\n  proxy_protcol: on\n",
            ),
            "field proxy_protcol not found in type config.Proxy",
        ),
        (
            GOOD.replace(
                "    email: ops@example.org\n",
                "    email: ops@example.org\n    emial: x\n",
            ),
            "config.ACME",
        ),
        (
            GOOD.replace(
                "    insecure_skip_verify: true\n",
                "    insecure_skip_verify: true\n    skip_verify: true\n",
            ),
            "config.App",
        ),
        (
            GOOD.replace("version: v3\n", "version: v3\nkubernetes: {}\n"),
            "config.FileConfig",
        ),
        (
            GOOD.replace(
                "      output: text\n",
                "      output: text\n      colour: true\n",
            ),
            "config.LogFormat",
        ),
        (GOOD.replace("type: github", "type: oidc"), "Enterprise"),
        (
            GOOD.replace("proxy_protocol: on", "proxy_protocol: maybe"),
            "proxy_protocol",
        ),
    ] {
        let e = config::parse(&bad).expect_err(needle);
        assert!(e.contains(needle), "{e}");
    }
}

#[test]
fn apt_needs_the_key_the_channel_and_a_published_version() {
    let (t, fs) = (TeleportStandIn::default(), Fs::default());
    fs.write("/etc/apt/sources.list.d/teleport.list", b"deb [signed-by=/usr/share/keyrings/teleport-archive-keyring.asc] https://apt.releases.teleport.dev/debian bookworm stable/v18\n").unwrap();
    let r = t.apt_update(&fs);
    assert_eq!(r.exitcode, 100, "no key yet: {r:?}");
    assert!(r.stderr.contains("NO_PUBKEY"), "{r:?}");
    run(&t, &fs, "curl -fsSL https://apt.releases.teleport.dev/gpg -o /usr/share/keyrings/teleport-archive-keyring.asc");
    assert_eq!(t.apt_update(&fs).exitcode, 0);
    assert!(t
        .apt_install("teleport=19.0.1", false)
        .stderr
        .contains("Version '19.0.1' for 'teleport' was not found"));
    assert!(t
        .apt_install("teleport=18.9.99", false)
        .stderr
        .contains("not found"));
    assert_eq!(t.apt_install("teleport=18.8.2", false).exitcode, 0);
    assert!(t
        .apt_install("teleport=18.8.1", false)
        .stderr
        .contains("--allow-downgrades"));
    assert_eq!(t.apt_install("teleport=18.8.1", true).exitcode, 0);
    assert_eq!(t.installed().as_deref(), Some("18.8.1"));
}

#[test]
fn serving_starts_only_after_a_valid_start_and_a_major_skip_is_refused() {
    let (t, fs) = installed("17.7.2");
    let readyz = "curl -fsS http://127.0.0.1:3000/readyz";
    assert_eq!(
        run(&t, &fs, readyz).exitcode,
        7,
        "nothing serves before a start"
    );
    assert!(run(&t, &fs, "tctl get github/github --format=json")
        .stderr
        .contains("connection refused"));
    fs.write(
        "/etc/teleport.yaml",
        GOOD.replace("proxy_protocol", "proxy_protocl").as_bytes(),
    )
    .unwrap();
    assert!(t.start(&fs).is_err());
    assert_eq!(run(&t, &fs, readyz).exitcode, 7);
    fs.write("/etc/teleport.yaml", GOOD.as_bytes()).unwrap();
    t.start(&fs).expect("valid start");
    assert_eq!(run(&t, &fs, readyz).exitcode, 0);
    // PROXY protocol on: a connection without the header is reset
    let ping = run(&t, &fs, "curl -fsSk https://127.0.0.1:3080/webapi/ping");
    assert_eq!(ping.exitcode, 56, "{ping:?}");
    let ping = run(
        &t,
        &fs,
        "curl -fsSk --haproxy-protocol https://127.0.0.1:3080/webapi/ping",
    );
    assert_eq!(ping.exitcode, 0, "{ping:?}");
    assert!(
        ping.stdout.contains("\"type\":\"github\""),
        "{}",
        ping.stdout
    );
    // 17 -> 19 skips 18: refused at start; 17 -> 18 -> 19 is fine
    t.stop();
    fs.write("/etc/apt/sources.list.d/teleport.list", b"deb [signed-by=/usr/share/keyrings/teleport-archive-keyring.asc] https://apt.releases.teleport.dev/debian bookworm stable/v19\n").unwrap();
    t.apt_update(&fs);
    assert_eq!(t.apt_install("teleport=19.0.1", false).exitcode, 0);
    let e = t.start(&fs).expect_err("a skip");
    assert!(e.contains("more than one major version"), "{e}");
    assert_eq!(run(&t, &fs, readyz).exitcode, 7);
    fs.write("/etc/apt/sources.list.d/teleport.list", b"deb [signed-by=/usr/share/keyrings/teleport-archive-keyring.asc] https://apt.releases.teleport.dev/debian bookworm stable/v18\n").unwrap();
    t.apt_update(&fs);
    assert_eq!(t.apt_install("teleport=18.8.2", true).exitcode, 0);
    t.start(&fs).expect("17 -> 18");
    fs.write("/etc/apt/sources.list.d/teleport.list", b"deb [signed-by=/usr/share/keyrings/teleport-archive-keyring.asc] https://apt.releases.teleport.dev/debian bookworm stable/v19\n").unwrap();
    t.apt_update(&fs);
    assert_eq!(t.apt_install("teleport=19.0.1", false).exitcode, 0);
    t.start(&fs).expect("18 -> 19");
}

#[test]
fn kubernetes_service_needs_its_kubeconfig() {
    let (t, fs) = installed("18.8.2");
    let yaml = format!(
        "{GOOD}kubernetes_service:\n  enabled: true\n  kubeconfig_file: /etc/teleport/kubeconfig\n"
    );
    fs.write("/etc/teleport.yaml", yaml.as_bytes()).unwrap();
    assert!(t
        .start(&fs)
        .expect_err("no kubeconfig")
        .contains("kubeconfig"));
    fs.write("/etc/teleport/kubeconfig", b"apiVersion: v1\n")
        .unwrap();
    t.start(&fs).expect("with the kubeconfig");
}

#[test]
fn tctl_checks_documents_and_hides_the_secret() {
    let (t, fs) = installed("18.8.2");
    fs.write("/etc/teleport.yaml", GOOD.as_bytes()).unwrap();
    t.start(&fs).unwrap();
    let connector = "kind: github\nversion: v3\nmetadata:\n  name: github\nspec:\n  client_id: abc\n  client_secret: s3cr3t\n  display: GitHub\n  redirect_url: https://teleport.example.org/v1/webapi/github/callback\n  teams_to_roles:\n  - organization: org\n    team: admins\n    roles: [access]\n";
    for (bad, needle) in [
        (connector.replace("version: v3", "version: v2"), "version"),
        (
            connector.replace("  client_secret: s3cr3t\n", ""),
            "client_secret",
        ),
        (
            connector.replace("    team: admins\n", ""),
            "teams_to_roles",
        ),
    ] {
        fs.write("/tmp/c.yaml", bad.as_bytes()).unwrap();
        let r = run(&t, &fs, "tctl create -f /tmp/c.yaml");
        assert_eq!(r.exitcode, 1, "{needle}");
        assert!(r.stderr.contains(needle), "{r:?}");
    }
    fs.write("/tmp/c.yaml", format!("{connector}---\nkind: role\nversion: v7\nmetadata:\n  name: admin\nspec:\n  allow:\n    logins: [root]\n").as_bytes()).unwrap();
    let r = run(&t, &fs, "tctl create -f /tmp/c.yaml");
    assert_eq!(r.exitcode, 0, "{r:?}");
    let got = run(&t, &fs, "tctl get github/github --format=json");
    assert!(
        !got.stdout.contains("s3cr3t") && got.stdout.contains("redirect_url"),
        "{}",
        got.stdout
    );
    assert!(run(&t, &fs, "tctl create /tmp/c.yaml")
        .stderr
        .contains("already exists"));
    assert_eq!(run(&t, &fs, "tctl rm role/admin").exitcode, 0);
    assert_eq!(
        run(&t, &fs, "tctl get role/admin --format=json").exitcode,
        1
    );
}

#[test]
fn github_tells_the_registered_app_from_a_wrong_secret() {
    let (t, fs) = (TeleportStandIn::default(), Fs::default());
    let ask = |secret: &str| {
        fs.write(
            "/tmp/f",
            format!("client_id={SANDBOX_GITHUB_CLIENT_ID}&client_secret={secret}&code=x")
                .as_bytes(),
        )
        .unwrap();
        run(
            &t,
            &fs,
            "curl -sS -X POST --data-binary @/tmp/f https://github.com/login/oauth/access_token",
        )
        .stdout
    };
    assert!(ask(SANDBOX_GITHUB_CLIENT_SECRET).contains("bad_verification_code"));
    assert!(ask("wrong").contains("incorrect_client_credentials"));
    let other = run(&t, &fs, "curl -fsS https://example.org/");
    assert_eq!(other.exitcode, 6, "no other network from the guest");
}
