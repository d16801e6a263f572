//! `waddle-sandbox --env-file` writes the connection settings once ready and exits cleanly on
//! SIGTERM.

#[path = "pve_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test]
async fn sandbox_writes_env_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tmp");
    let env = dir.path().join("sandbox.env");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_waddle-sandbox"))
        .arg("--env-file")
        .arg(&env)
        .args(["--listen", "127.10.3.1:0", "--boot-ms", "50"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn sandbox");
    let mut text = String::new();
    for _ in 0..500 {
        if let Ok(t) = std::fs::read_to_string(&env) {
            text = t;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let vars: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let endpoint = vars.get("PROXMOX_VE_ENDPOINT").expect("endpoint").clone();
    assert!(endpoint.starts_with("https://127.10.3.1:"), "{endpoint}");
    let token = vars.get("PROXMOX_VE_API_TOKEN").expect("token").clone();
    assert!(token.starts_with("root@pam!waddle="), "{token}");
    assert_eq!(vars.get("PROXMOX_VE_NODE").map(String::as_str), Some("pve"));
    let ca =
        std::fs::read_to_string(vars.get("PROXMOX_VE_CA_CERT").expect("ca path")).expect("ca file");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));

    // The CA verifies the server, the token works.
    let http = support::client(&ca);
    let r = http
        .get(format!("{endpoint}/api2/json/nodes/pve/storage"))
        .header("Authorization", format!("PVEAPIToken={token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["storage"].as_str())
        .collect();
    assert_eq!(ids, vec!["local", "local-lvm"]);

    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
    let mut status = None;
    for _ in 0..500 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("sandbox did not exit on SIGTERM");
        }
    };
    assert!(status.success(), "exit status {status}");
}
