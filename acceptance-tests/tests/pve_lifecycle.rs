//! PVE emulator: VM lifecycle with import-from, guest agent, Debian appliance from a NoCloud
//! seed ISO (real haproxy -c), shutdown, delete with purge.

#[path = "pve_support.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use waddle_acceptance::pve::DebianAppliance;

async fn wait_agent(api: &Api, vmid: u32) -> Value {
    for _ in 0..300 {
        let r = api
            .call(
                "GET",
                &format!("/nodes/pve/qemu/{vmid}/agent/network-get-interfaces"),
                &[],
            )
            .await;
        if r.status == 200 {
            return r.body["data"].clone();
        }
        assert_eq!(r.reason, "QEMU guest agent is not running", "{}", r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("agent never answered");
}

async fn exec(api: &Api, vmid: u32, argv: &[&str]) -> Value {
    let form: Vec<(&str, &str)> = argv.iter().map(|a| ("command", *a)).collect();
    let pid = api
        .ok("POST", &format!("/nodes/pve/qemu/{vmid}/agent/exec"), &form)
        .await;
    let pid = pid["pid"].as_i64().expect("pid").to_string();
    api.ok(
        "GET",
        &format!("/nodes/pve/qemu/{vmid}/agent/exec-status"),
        &[("pid", pid.as_str())],
    )
    .await
}

#[tokio::test]
async fn vm_lifecycle_with_import_from_and_agent() {
    // vmbr0 has a DHCP server here: the guest's NIC gets a lease.
    let api = start(fast().dhcp_bridge("vmbr0").build()).await;
    download(
        &api,
        "generic-cloud.qcow2",
        "https://images.example.invalid/generic-cloud.qcow2",
    )
    .await;
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/qemu",
            &[
                ("vmid", "105"),
                ("name", "web-1"),
                ("memory", "1024"),
                ("cores", "2"),
                ("agent", "1"),
                ("scsihw", "virtio-scsi-single"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/generic-cloud.qcow2,iothread=1",
                ),
                ("efidisk0", "local-lvm:1,efitype=4m,pre-enrolled-keys=1"),
                ("tpmstate0", "local-lvm:1,version=v2.0"),
                ("net0", "virtio,bridge=vmbr0,firewall=1"),
                ("serial0", "socket"),
                ("bios", "ovmf"),
            ],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let cfg = api.ok("GET", "/nodes/pve/qemu/105/config", &[]).await;
    let scsi0 = cfg["scsi0"].as_str().expect("scsi0");
    assert_eq!(scsi0, "local-lvm:vm-105-disk-0,iothread=1,size=2G");
    assert!(!scsi0.contains("import-from"));
    assert!(cfg["efidisk0"]
        .as_str()
        .expect("efi")
        .starts_with("local-lvm:vm-105-disk-1,efitype=4m,pre-enrolled-keys=1"));
    assert!(
        cfg["net0"]
            .as_str()
            .expect("net0")
            .starts_with("virtio=BC:24:11:"),
        "{}",
        cfg["net0"]
    );
    assert_eq!(cfg["memory"], "1024");
    assert_eq!(cfg["cores"], 2);
    assert!(cfg["digest"].is_string());
    // resize the imported disk
    let upid = api
        .ok(
            "PUT",
            "/nodes/pve/qemu/105/resize",
            &[("disk", "scsi0"), ("size", "10G")],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    assert_eq!(
        api.ok("GET", "/nodes/pve/qemu/105/config", &[]).await["scsi0"],
        "local-lvm:vm-105-disk-0,iothread=1,size=10G"
    );
    // agent refuses while stopped
    let r = api
        .call("POST", "/nodes/pve/qemu/105/agent/ping", &[])
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "VM 105 is not running")
    );
    let upid = api
        .ok("POST", "/nodes/pve/qemu/105/status/start", &[])
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let st = api
        .ok("GET", "/nodes/pve/qemu/105/status/current", &[])
        .await;
    assert_eq!(st["status"], "running");
    assert_eq!(st["agent"], 1);
    // booting: agent not yet running, then answers with a DHCP address and the NIC's MAC
    let r = api
        .call("POST", "/nodes/pve/qemu/105/agent/ping", &[])
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "QEMU guest agent is not running")
    );
    let ifaces = wait_agent(&api, 105).await;
    let eth0 = ifaces["result"]
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["name"] == "eth0")
        .expect("eth0")
        .clone();
    let mac = cfg["net0"]
        .as_str()
        .expect("net0")
        .split(',')
        .next()
        .expect("model=mac")
        .split('=')
        .nth(1)
        .expect("mac")
        .to_ascii_lowercase();
    assert_eq!(eth0["hardware-address"], mac);
    let ip = eth0["ip-addresses"][0]["ip-address"].as_str().expect("ip");
    assert!(ip.starts_with("127.10.254."), "{ip}");
    api.ok("POST", "/nodes/pve/qemu/105/agent/ping", &[]).await;
    // a non-hotpluggable change while running goes to pending
    api.ok("PUT", "/nodes/pve/qemu/105/config", &[("memory", "2048")])
        .await;
    let pending = api.ok("GET", "/nodes/pve/qemu/105/pending", &[]).await;
    let mem = pending
        .as_array()
        .expect("pending")
        .iter()
        .find(|p| p["key"] == "memory")
        .expect("memory")
        .clone();
    assert_eq!(
        (mem["value"].clone(), mem["pending"].clone()),
        (Value::from("1024"), Value::from("2048"))
    );
    // delete refused while running
    let r = api
        .call("DELETE", "/nodes/pve/qemu/105", &[("purge", "1")])
        .await;
    assert_eq!(r.reason, "VM 105 is running - destroy failed");
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/qemu/105/status/shutdown",
            &[("timeout", "30")],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    assert_eq!(
        api.ok("GET", "/nodes/pve/qemu/105/status/current", &[])
            .await["status"],
        "stopped"
    );
    assert_eq!(
        api.ok("GET", "/nodes/pve/qemu/105/config", &[("current", "1")])
            .await["memory"],
        "2048"
    );
    let r = api
        .call("POST", "/nodes/pve/qemu/105/status/shutdown", &[])
        .await;
    assert_eq!(r.reason, "VM 105 not running");
    let upid = api
        .ok(
            "DELETE",
            "/nodes/pve/qemu/105",
            &[("purge", "1"), ("destroy-unreferenced-disks", "1")],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    assert!(api.emu.vms().is_empty());
    let left: Vec<_> = api
        .emu
        .volumes()
        .into_iter()
        .filter(|v| v.vmid.is_some())
        .collect();
    assert!(left.is_empty(), "no disk left behind: {left:?}");
    let r = api.call("GET", "/nodes/pve/qemu/105/config", &[]).await;
    assert_eq!(
        r.reason,
        "Configuration file 'nodes/pve/qemu-server/105.conf' does not exist"
    );
    let resources = api.ok("GET", "/cluster/resources", &[("type", "vm")]).await;
    assert_eq!(resources.as_array().map(Vec::len), Some(0));
    api.assert_no_violations();
}

#[tokio::test]
async fn create_refusals() {
    let api = start(fast().build()).await;
    // import source missing
    let r = api
        .call(
            "POST",
            "/nodes/pve/qemu",
            &[
                ("vmid", "106"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/missing.qcow2",
                ),
            ],
        )
        .await;
    assert_eq!(
        (r.status, r.reason.as_str()),
        (500, "volume 'local:import/missing.qcow2' does not exist")
    );
    // disks on a storage without `images`
    let r = api
        .call(
            "POST",
            "/nodes/pve/qemu",
            &[("vmid", "106"), ("scsi0", "local:10")],
        )
        .await;
    assert_eq!(
        r.reason,
        "storage 'local' does not support content-type 'images'"
    );
    // duplicate vmid
    let upid = api.ok("POST", "/nodes/pve/qemu", &[("vmid", "106")]).await;
    api.wait_task(upid.as_str().expect("upid")).await;
    let r = api
        .call("POST", "/nodes/pve/qemu", &[("vmid", "106")])
        .await;
    assert_eq!(r.reason, "VM 106 already exists on node 'pve'");
    assert_eq!(api.ok("GET", "/cluster/nextid", &[]).await, 100);
    // start fails when the bridge does not exist
    api.ok(
        "PUT",
        "/nodes/pve/qemu/106/config",
        &[("net0", "virtio,bridge=vmbr7")],
    )
    .await;
    let upid = api
        .ok("POST", "/nodes/pve/qemu/106/status/start", &[])
        .await;
    assert_eq!(
        api.wait_task(upid.as_str().expect("upid")).await,
        "bridge 'vmbr7' does not exist"
    );
    api.assert_no_violations();
}

fn build_seed_iso(dir: &std::path::Path, user_data: &str) -> Option<Vec<u8>> {
    let src = dir.join("seed");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("user-data"), user_data).expect("write");
    std::fs::write(
        src.join("meta-data"),
        "instance-id: iid-105\nlocal-hostname: sni-proxy\n",
    )
    .expect("write");
    let out = dir.join("seed.iso");
    let st = std::process::Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .ok()?;
    st.success().then(|| std::fs::read(&out).expect("iso"))
}

#[tokio::test]
async fn debian_appliance_applies_user_data_and_runs_real_haproxy() {
    let has_haproxy = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .iter()
        .any(|p| std::path::Path::new(p).is_file());
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = "global\n  log stdout format raw local0\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.30.0.1:8443\n  default_backend be\nbackend be\n  server s1 127.0.0.1:1\n";
    let user_data = format!(
        "#cloud-config\npackages:\n  - haproxy\n  - qemu-guest-agent\nwrite_files:\n  - path: /etc/haproxy/haproxy.cfg\n    content: |\n{}\n    defer: true\nusers:\n  - name: admin\nruncmd:\n  - [haproxy, -c, -f, /etc/haproxy/haproxy.cfg]\n  - [systemctl, restart, haproxy]\n",
        cfg.lines().map(|l| format!("      {l}")).collect::<Vec<_>>().join("\n")
    );
    let iso = build_seed_iso(tmp.path(), &user_data)
        .expect("xorriso builds the seed ISO (install it with scripts/install-test-deps.sh)");
    // The ISO reader sees what cloud-init would.
    let parsed = waddle_acceptance::pve::read_iso_files(&iso).expect("iso parses");
    assert_eq!(parsed.volume_id, "cidata");
    assert!(parsed.files.contains_key("user-data") && parsed.files.contains_key("meta-data"));

    let api = start(fast().build()).await;
    upload_iso(&api, "seed-105.iso", iso).await;
    download(
        &api,
        "debian-12-genericcloud-amd64.qcow2",
        "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
    )
    .await;
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/qemu",
            &[
                ("vmid", "110"),
                ("agent", "1"),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/debian-12-genericcloud-amd64.qcow2",
                ),
                ("ide2", "local:iso/seed-105.iso,media=cdrom"),
                ("net0", "virtio,bridge=vmbr0"),
                ("start", "1"),
            ],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    assert!(
        api.ok("GET", "/nodes/pve/qemu/110/config", &[]).await["ide2"]
            .as_str()
            .expect("ide2")
            .starts_with("local:iso/seed-105.iso,media=cdrom,size=")
    );
    wait_agent(&api, 110).await;
    let app = api.emu.appliance(110).expect("appliance");
    assert_eq!(app.kind(), "debian");
    let deb = app
        .as_any()
        .downcast_ref::<DebianAppliance>()
        .expect("debian");
    assert_eq!(deb.hostname().as_deref(), Some("sni-proxy"));
    assert_eq!(deb.users(), vec!["admin".to_string()]);
    assert!(deb.packages().contains("haproxy"));
    let r = exec(&api, 110, &["cat", "/etc/haproxy/haproxy.cfg"]).await;
    assert_eq!(
        r["out-data"].as_str().expect("out").trim_end(),
        cfg.trim_end()
    );
    let r = exec(&api, 110, &["sha256sum", "/etc/haproxy/haproxy.cfg"]).await;
    assert_eq!(r["exitcode"], 0);
    assert!(
        has_haproxy,
        "the real haproxy binary is needed (install it with scripts/install-test-deps.sh)"
    );
    assert_eq!(
        deb.cloud_init_status(),
        "done",
        "{:?}",
        deb.cloud_init_errors()
    );
    assert_eq!(
        exec(&api, 110, &["systemctl", "is-active", "haproxy"]).await["out-data"],
        "active\n"
    );
    // a broken config written through the agent is refused by the real haproxy
    api.ok(
        "POST",
        "/nodes/pve/qemu/110/agent/file-write",
        &[
            ("file", "/etc/haproxy/haproxy.cfg.new"),
            (
                "content",
                "frontend x\n  bind 127.30.0.1:8443\n  use_backend nowhere\n",
            ),
        ],
    )
    .await;
    let r = exec(&api, 110, &["sh", "-c", "haproxy -c -f /etc/haproxy/haproxy.cfg.new && mv /etc/haproxy/haproxy.cfg.new /etc/haproxy/haproxy.cfg && systemctl reload haproxy"]).await;
    assert_ne!(r["exitcode"], 0);
    assert!(
        r["err-data"].as_str().unwrap_or("").contains("nowhere"),
        "{r}"
    );
    assert_eq!(
        exec(&api, 110, &["cat", "/etc/haproxy/haproxy.cfg"]).await["out-data"]
            .as_str()
            .map(str::trim_end),
        Some(cfg.trim_end()),
        "old config kept"
    );
    // a good one is swapped in and reloaded
    let good = cfg.replace("127.0.0.1:1", "127.0.0.1:2");
    api.ok(
        "POST",
        "/nodes/pve/qemu/110/agent/file-write",
        &[
            ("file", "/etc/haproxy/haproxy.cfg.new"),
            ("content", good.as_str()),
        ],
    )
    .await;
    let r = exec(&api, 110, &["sh", "-c", "haproxy -c -f /etc/haproxy/haproxy.cfg.new && mv /etc/haproxy/haproxy.cfg.new /etc/haproxy/haproxy.cfg && systemctl reload haproxy"]).await;
    assert_eq!(r["exitcode"], 0, "{r}");
    use sha2::Digest;
    assert_eq!(
        deb.haproxy_loaded_sha256(),
        Some(hex::encode(sha2::Sha256::digest(good.as_bytes())))
    );
    api.assert_no_violations();
}
