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

    // A VM booting a Talos image runs the Talos emulator: its agent reports the 127.20.x.y
    // address of its cloud-init drive.
    let call = |method: &'static str, path: String, form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let endpoint = endpoint.clone();
        let token = token.clone();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            support::raw_call(&http, &endpoint, Some(&token), method, &path, &form).await
        }
    };
    let wait_task = |upid: String| async move {
        for _ in 0..500 {
            let r = call(
                "GET",
                format!("/nodes/pve/tasks/{}/status", support::url_encode(&upid)),
                vec![],
            )
            .await;
            if r.body["data"]["status"] == "stopped" {
                return r.body["data"]["exitstatus"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {upid} did not finish");
    };
    let r = call("POST", "/nodes/pve/storage/local/download-url".into(), vec![
        ("content", "import".into()),
        ("filename", "talos-v1.12.0-nocloud-amd64.raw".into()),
        ("url", "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.0/nocloud-amd64.raw.xz".into()),
    ])
    .await;
    assert_eq!(
        wait_task(r.body["data"].as_str().expect("upid").to_string()).await,
        "OK"
    );
    let r = call(
        "POST",
        "/nodes/pve/qemu".into(),
        vec![
            ("vmid", "120".into()),
            ("name", "cp-1".into()),
            ("agent", "1".into()),
            (
                "scsi0",
                "local-lvm:0,import-from=local:import/talos-v1.12.0-nocloud-amd64.raw".into(),
            ),
            ("net0", "virtio,bridge=vmbr0".into()),
            // The sandbox's network has no DHCP: the address comes from the cloud-init drive.
            ("ide2", "local-lvm:cloudinit".into()),
            ("ipconfig0", "ip=127.20.12.10/24,gw=127.20.12.1".into()),
            ("start", "1".into()),
        ],
    )
    .await;
    assert_eq!(
        wait_task(r.body["data"].as_str().expect("upid").to_string()).await,
        "OK"
    );
    let mut addr = None;
    for _ in 0..500 {
        let r = call(
            "GET",
            "/nodes/pve/qemu/120/agent/network-get-interfaces".into(),
            vec![],
        )
        .await;
        if r.status == 200 {
            addr = r.body["data"]["result"]
                .as_array()
                .and_then(|l| l.iter().find(|i| i["name"] == "eth0"))
                .and_then(|i| i["ip-addresses"][0]["ip-address"].as_str())
                .map(str::to_string);
            if addr.is_some() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = addr.expect("talos guest reports an address");
    assert_eq!(addr, "127.20.12.10");

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

/// `--help` prints the usage with every option the parser accepts and exits 0; an unknown
/// option is an error (exit 2) that shows the usage line.
#[test]
fn sandbox_help_lists_every_option_and_exits_zero() {
    let bin = env!("CARGO_BIN_EXE_waddle-sandbox");
    for flag in ["--help", "-h"] {
        let out = std::process::Command::new(bin)
            .arg(flag)
            .output()
            .expect("run waddle-sandbox");
        assert_eq!(out.status.code(), Some(0), "{flag}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        for option in [
            "--env-file PATH",
            "--listen IP:PORT",
            "--node NAME",
            "--boot-ms MS",
            "--token-secret SECRET",
            "--dhcp-bridge BRIDGE",
            "--fault RULE",
            "--seed N",
            "PROXMOX_VE_ENDPOINT",
            "PROXMOX_VE_CA_CERT",
        ] {
            assert!(
                text.contains(option),
                "{flag} does not mention {option}:\n{text}"
            );
        }
    }
    let out = std::process::Command::new(bin)
        .arg("--no-such-option")
        .output()
        .expect("run waddle-sandbox");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown argument '--no-such-option'")
            && err.contains("usage: waddle-sandbox"),
        "{err}"
    );
}
