//! Self-check of the requests this client sends against the official PVE 9.1 API schema
//! (`../shared/specs/pve-9.1/apischema.json`, read at test time): every path/method exists,
//! every parameter name is declared, enums and integer/boolean types match, and property
//! strings (`net[n]`, `scsi[n]`, `efidisk0`, `tpmstate0`, `ide[n]`) only use declared keys.
//! The emulator's contract test (acceptance-tests) is the full version of this.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{start, Action, Req};
use waddle_proxmox::*;

fn schema() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/specs/pve-9.1/apischema.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the shared specs must sit beside the repo)"));
    serde_json::from_str(&text).unwrap()
}

fn find_node<'a>(nodes: &'a Value, segs: &[String]) -> Option<&'a Value> {
    fn walk<'a>(children: &'a Value, segs: &[String], depth: usize) -> Option<&'a Value> {
        for c in children.as_array()? {
            let path = c["path"].as_str()?;
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            if parts.len() != depth + 1 {
                continue;
            }
            let last = parts[depth];
            let matches = if last.starts_with('{') {
                true
            } else {
                last == segs[depth]
            };
            if !matches {
                continue;
            }
            if depth + 1 == segs.len() {
                return Some(c);
            }
            if let Some(found) = walk(&c["children"], segs, depth + 1) {
                return Some(found);
            }
        }
        None
    }
    walk(nodes, segs, 0)
}

fn decode(seg: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", seg.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

fn schema_param<'a>(props: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(p) = props.get(name) {
        return Some(p);
    }
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() < name.len() {
        return props.get(format!("{stem}[n]"));
    }
    None
}

fn check_property_string(name: &str, value: &str, format: &Value, errs: &mut Vec<String>) {
    let Some(fmt) = format.as_object() else {
        return;
    };
    let default_key = fmt
        .iter()
        .find(|(_, v)| v.get("default_key").is_some())
        .map(|(k, _)| k.clone());
    for part in value.split(',') {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k.to_string(), v),
            None => match &default_key {
                Some(d) => (d.clone(), part),
                None => {
                    errs.push(format!(
                        "{name}: part {part:?} without key and no default key"
                    ));
                    continue;
                }
            },
        };
        match fmt.get(&k) {
            None => errs.push(format!(
                "{name}: key {k:?} not in the property-string format"
            )),
            Some(spec) => {
                if let Some(en) = spec.get("enum").and_then(Value::as_array) {
                    if !en.iter().any(|e| e.as_str() == Some(v)) {
                        errs.push(format!("{name}: {k}={v} not in enum {en:?}"));
                    }
                }
                if spec.get("type").and_then(Value::as_str) == Some("boolean")
                    && !matches!(v, "0" | "1")
                {
                    errs.push(format!("{name}: {k}={v} is not 0/1"));
                }
            }
        }
    }
}

fn check(schema: &Value, rec: &RecordedRequest) -> Vec<String> {
    let mut errs = Vec::new();
    let segs: Vec<String> = rec
        .path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let Some(node) = find_node(schema, &segs) else {
        return vec![format!("{} {}: path not in schema", rec.method, rec.path)];
    };
    let Some(info) = node["info"].get(&rec.method) else {
        return vec![format!("{} {}: method not in schema", rec.method, rec.path)];
    };
    let props = &info["parameters"]["properties"];
    for (k, v) in rec.params.as_object().unwrap() {
        let Some(p) = schema_param(props, k) else {
            errs.push(format!(
                "{} {}: unknown parameter {k}",
                rec.method, rec.path
            ));
            continue;
        };
        let ty = p["type"].as_str().unwrap_or("string");
        match ty {
            "integer" => {
                if !(v.is_i64() || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok())) {
                    errs.push(format!("{}: {k}={v} is not an integer", rec.path));
                }
            }
            "boolean" => {
                if !v.is_boolean() {
                    errs.push(format!("{}: {k}={v} is not a boolean", rec.path));
                }
            }
            "array" => {
                if !v.is_array() {
                    errs.push(format!("{}: {k}={v} is not an array", rec.path));
                }
            }
            _ => {
                let Some(s) = v.as_str() else {
                    errs.push(format!("{}: {k}={v} is not a string", rec.path));
                    continue;
                };
                if let Some(en) = p.get("enum").and_then(Value::as_array) {
                    if !en.iter().any(|e| e.as_str() == Some(s)) {
                        errs.push(format!("{}: {k}={s} not in enum", rec.path));
                    }
                }
                if let Some(fmt) = p.get("format") {
                    check_property_string(k, s, fmt, &mut errs);
                }
            }
        }
    }
    // required parameters that are not path parameters
    if let Some(obj) = props.as_object() {
        let path_params: Vec<String> = node["path"]
            .as_str()
            .unwrap()
            .split('/')
            .filter(|s| s.starts_with('{'))
            .map(|s| s.trim_matches(|c| c == '{' || c == '}').to_string())
            .collect();
        for (k, p) in obj {
            let optional = p.get("optional").and_then(Value::as_i64) == Some(1);
            if !optional && !path_params.contains(k) && rec.params.get(k).is_none() {
                errs.push(format!("{} {}: missing required {k}", rec.method, rec.path));
            }
        }
    }
    errs
}

fn task(kind: &str) -> Value {
    json!(format!(
        "UPID:pve:00000001:0000ABCD:66000001:{kind}:100:waddle@pve!ci:"
    ))
}

#[tokio::test]
async fn every_request_of_the_typed_operations_matches_the_schema() {
    let schema = schema();
    let handler: support::Handler = Arc::new(|req: &Req| {
        let p = req.path().trim_start_matches("/api2/json").to_string();
        let m = req.method.as_str();
        match (m, p.as_str()) {
            ("GET", "/cluster/nextid") => Action::ok(json!("100")),
            ("GET", "/cluster/resources") => Action::ok(json!([
                {"id": "qemu/100", "vmid": 100, "node": "pve", "type": "qemu", "status": "running", "name": "vm"}
            ])),
            ("GET", p) if p.contains("/tasks/") && p.ends_with("/status") => {
                Action::ok(json!({"status": "stopped", "exitstatus": "OK"}))
            }
            ("GET", p) if p.ends_with("/status/current") => {
                Action::ok(json!({"status": "running", "qmpstatus": "running", "agent": 1}))
            }
            ("GET", p) if p.ends_with("/config") => {
                Action::ok(json!({"name": "vm", "digest": "d"}))
            }
            ("GET", p) if p.ends_with("/content") => Action::ok(json!([])),
            ("GET", p) if p.ends_with("/agent/network-get-interfaces") => {
                Action::ok(json!({"result": [
                    {"name": "eth0", "hardware-address": "bc:24:11:00:00:01",
                     "ip-addresses": [{"ip-address": "10.10.0.50", "ip-address-type": "ipv4", "prefix": 24}]}
                ]}))
            }
            ("GET", p) if p.ends_with("/agent/exec-status") => {
                Action::ok(json!({"exited": 1, "exitcode": 0, "out-data": "ok"}))
            }
            ("POST", p) if p.ends_with("/agent/exec") => Action::ok(json!({"pid": 7})),
            ("POST", p) if p.ends_with("/agent/ping") => Action::ok(json!({"result": {}})),
            ("POST", "/nodes/pve/qemu") => Action::ok(task("qmcreate")),
            ("POST", p) if p.contains("/status/") => Action::ok(task("qmshutdown")),
            ("POST", p) if p.ends_with("/download-url") => Action::ok(task("download")),
            ("POST", p) if p.ends_with("/upload") => Action::ok(task("imgcopy")),
            ("DELETE", p) if p.starts_with("/nodes/pve/qemu/") => Action::ok(task("qmdestroy")),
            ("DELETE", p) if p.contains("/content/") => Action::ok(task("imgdel")),
            ("PUT", "/nodes/pve/network") => Action::ok(task("srvreload")),
            ("PUT", "/cluster/sdn") => Action::ok(task("reloadnetworkall")),
            ("GET", p) if p.ends_with("/rules") => Action::ok(json!([])),
            _ => Action::ok(json!(null)),
        }
    });
    let server = start("127.10.200.20", handler).await;
    let recorder = Arc::new(MemoryRecorder::new());
    let mut cfg = ClientConfig::new(
        server.endpoint(),
        Auth::api_token("waddle@pve!ci=00000000-0000-4000-8000-000000000001").unwrap(),
    );
    cfg.ca_cert_pem = Some(server.ca_pem.clone());
    cfg.recorder = Some(recorder.clone());
    let c = Client::new(cfg).unwrap();

    // VM lifecycle
    let mut spec = VmSpec::new("talos-cp-1", 3, 8192);
    spec.bios = Bios::Ovmf;
    spec.machine = Some("q35".into());
    spec.cpu = Some("host".into());
    spec.disks
        .push(DiskSpec::import(0, "local-lvm", "local:import/talos.qcow2"));
    spec.efidisk = Some(EfiDiskSpec {
        ms_cert: Some("2023".into()),
        ..EfiDiskSpec::new("local-lvm", true)
    });
    spec.tpmstate = Some(TpmStateSpec {
        storage: "local-lvm".into(),
    });
    let mut nic = NetSpec::virtio(0, "vmbr1");
    nic.mac = Some("BC:24:11:00:00:10".into());
    nic.firewall = true;
    nic.tag = Some(10);
    spec.nets.push(nic);
    spec.cdroms.push(CdromSpec::ide2("local:iso/seed.iso"));
    let mut ci = CloudInitSpec::nocloud("local-lvm");
    ci.index = 0;
    ci.ipconfig.insert(
        0,
        IpConfig::static_address("10.10.0.10/24", Some("10.10.0.1")),
    );
    ci.nameservers = vec!["1.1.1.1".into(), "fd00::53".into()];
    ci.searchdomains = vec!["example.org".into()];
    spec.cloud_init = Some(ci);
    spec.boot_order = vec!["scsi0".into(), "ide2".into()];
    spec.tags = vec!["waddle".into()];
    spec.description = Some("managed by waddle".into());
    spec.onboot = Some(true);
    spec.vga = Some("serial0".into());
    let vmid = c.create_vm("pve", &spec).await.unwrap();
    c.vm_config("pve", vmid).await.unwrap();
    c.update_vm_config(
        "pve",
        vmid,
        &Params::new().int("cores", 4).str("delete", "ide2"),
    )
    .await
    .unwrap();
    c.resize_disk("pve", vmid, "scsi0", "10G").await.unwrap();
    c.vm_status("pve", vmid).await.unwrap();
    c.stop_vm("pve", vmid).await.unwrap();
    c.shutdown_vm("pve", vmid, Duration::from_secs(30))
        .await
        .unwrap();
    // The mock's VM is named "vm" and carries no mark: deleted as the explicitly named VM.
    let owner = waddle_proxmox::OwnerMark::new(&["test", "vm"]);
    c.shutdown_and_delete_vm(vmid, Duration::from_secs(30), &owner, Some("vm"))
        .await
        .unwrap();
    c.list_nodes().await.unwrap();

    // storage
    let dl = DownloadUrl {
        content: ContentType::Import,
        filename: "talos-v1.12.0-nocloud-amd64.qcow2".into(),
        url: "https://factory.talos.dev/image/x/v1.12.0/nocloud-amd64.qcow2".into(),
        checksum: Some((ChecksumAlgorithm::Sha256, "0".repeat(64))),
        verify_certificates: Some(true),
        compression: None,
    };
    c.ensure_image_downloaded("pve", "local", &dl, &WaitOptions::default())
        .await
        .unwrap();
    let iso = nocloud::NoCloudSeed {
        user_data: "#cloud-config\n".into(),
        meta_data: "instance-id: x\n".into(),
        ..Default::default()
    }
    .build_iso(Some(0))
    .unwrap();
    c.upload_iso("pve", "local", "seed-x.iso", iso, false)
        .await
        .unwrap();
    c.delete_volume("pve", "local", "local:iso/seed-x.iso")
        .await
        .unwrap();

    // guest agent
    c.agent_ping("pve", vmid).await.unwrap();
    c.agent_network_interfaces("pve", vmid).await.unwrap();
    c.agent_exec(
        "pve",
        vmid,
        &["true".to_string()],
        Some("in"),
        Duration::from_secs(5),
        None,
    )
    .await
    .unwrap();
    c.agent_file_write("pve", vmid, "/etc/x", "y", true)
        .await
        .unwrap();
    c.agent_file_write("pve", vmid, "/etc/x", "eQ==", false)
        .await
        .unwrap();

    // network
    let mut br = BridgeSpec::isolated("vmbr1", "10.10.0.1/24");
    br.comments = Some("waddle".into());
    c.create_bridge("pve", &br).await.unwrap();
    c.apply_network("pve").await.unwrap();
    c.delete_network_iface("pve", "vmbr1").await.unwrap();
    c.create_sdn_simple_zone("waddle", true, &["pve".to_string()])
        .await
        .unwrap();
    c.create_sdn_vnet("wvnet", "waddle", Some("waddle private"))
        .await
        .unwrap();
    c.create_sdn_subnet(
        "wvnet",
        &SubnetSpec {
            cidr: "10.10.0.0/24".into(),
            gateway: Some("10.10.0.1".into()),
            snat: true,
            dhcp_ranges: vec!["start-address=10.10.0.100,end-address=10.10.0.200".into()],
        },
    )
    .await
    .unwrap();
    c.apply_sdn().await.unwrap();
    c.delete_sdn_subnet("waddle", "wvnet", "10.10.0.0/24")
        .await
        .unwrap();
    c.delete_sdn_vnet("wvnet").await.unwrap();
    c.delete_sdn_zone("waddle").await.unwrap();

    // firewall
    for scope in [FirewallScope::Cluster, FirewallScope::Node("pve".into())] {
        c.set_firewall_enabled(&scope, true).await.unwrap();
        c.firewall_options(&scope).await.unwrap();
        c.add_firewall_rule(
            &scope,
            &FirewallRule {
                direction: "in".into(),
                action: "ACCEPT".into(),
                enable: true,
                proto: Some("tcp".into()),
                dport: Some("443".into()),
                source: Some("+waddle-admins".into()),
                comment: Some("https".into()),
                log: Some("nolog".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        c.firewall_rules(&scope).await.unwrap();
        c.delete_firewall_rule(&scope, 0, Some("abc"))
            .await
            .unwrap();
    }
    c.create_ipset("waddle-admins", Some("admins"))
        .await
        .unwrap();
    c.add_ipset_entry(
        "waddle-admins",
        &IpSetEntry {
            cidr: "192.0.2.0/24".into(),
            nomatch: false,
            comment: None,
        },
    )
    .await
    .unwrap();
    c.ipset_entries("waddle-admins").await.unwrap();
    c.delete_ipset_entry("waddle-admins", "192.0.2.0/24")
        .await
        .unwrap();
    c.delete_ipset("waddle-admins").await.unwrap();

    let entries = recorder.entries();
    assert!(entries.len() > 50, "{} requests", entries.len());
    let mut errs = Vec::new();
    for e in &entries {
        errs.extend(check(&schema, e));
    }
    assert!(errs.is_empty(), "schema violations:\n{}", errs.join("\n"));

    // The multipart upload carried content=iso and the file part named "filename".
    let up = server
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with("/upload"))
        .unwrap();
    let body = String::from_utf8_lossy(&up.body);
    assert!(up
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/form-data"));
    assert!(body.contains("name=\"content\"\r\n\r\niso"));
    assert!(body.contains("name=\"filename\"; filename=\"seed-x.iso\""));
    assert!(body.find("name=\"content\"").unwrap() < body.find("name=\"filename\"").unwrap());
}

#[test]
fn checker_rejects_bad_requests() {
    // Guard against a checker that accepts everything.
    let schema = schema();
    let bad = |method: &str, path: &str, params: Value| RecordedRequest {
        method: method.into(),
        path: path.into(),
        params,
        status: Some(200),
        response: None,
    };
    let cases = [
        bad(
            "POST",
            "/nodes/pve/qemu",
            json!({"vmid": 100, "net0": "virtio,bridg=vmbr0"}),
        ),
        bad(
            "POST",
            "/nodes/pve/qemu",
            json!({"vmid": 100, "bios": "uefi"}),
        ),
        bad(
            "POST",
            "/nodes/pve/qemu",
            json!({"vmid": 100, "colour": "red"}),
        ),
        bad(
            "POST",
            "/nodes/pve/qemu",
            json!({"vmid": 100, "agent": true}),
        ),
        bad("GET", "/nodes/pve/nonexistent", json!({})),
        bad("PATCH", "/nodes/pve/qemu", json!({})),
        bad(
            "POST",
            "/nodes/pve/storage/local/download-url",
            json!({"content": "import"}),
        ),
    ];
    for c in &cases {
        assert!(!check(&schema, c).is_empty(), "accepted {c:?}");
    }
    let good = bad(
        "POST",
        "/nodes/pve/qemu",
        json!({"vmid": 100, "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1", "agent": "1"}),
    );
    assert_eq!(check(&schema, &good), Vec::<String>::new());
}

#[tokio::test]
async fn create_vm_grows_imported_disk_and_multi_node_delete_addresses_the_owner() {
    let handler: support::Handler = Arc::new(|req: &Req| {
        let p = req.path().trim_start_matches("/api2/json").to_string();
        match (req.method.as_str(), p.as_str()) {
            ("POST", "/nodes/pve-b/qemu") => Action::ok(task("qmcreate")),
            ("GET", p) if p.contains("/tasks/") => {
                Action::ok(json!({"status": "stopped", "exitstatus": "OK"}))
            }
            ("GET", "/nodes/pve-b/qemu/150/config") => Action::ok(json!({
                "name": "cp", "scsi0": "local-lvm:vm-150-disk-1,discard=on,size=1G"
            })),
            ("PUT", "/nodes/pve-b/qemu/150/resize") => Action::ok(task("resize")),
            ("GET", "/cluster/resources") => Action::ok(json!([
                {"vmid": 150, "node": "pve-b", "type": "qemu", "status": "stopped"},
                {"vmid": 150, "node": "pve-a", "type": "lxc", "status": "running"}
            ])),
            ("GET", "/nodes/pve-b/qemu/150/status/current") => {
                Action::ok(json!({"status": "stopped"}))
            }
            ("DELETE", "/nodes/pve-b/qemu/150") => Action::ok(task("qmdestroy")),
            _ => Action::error(501, "Method not implemented", json!({"data": null})),
        }
    });
    let server = start("127.10.200.21", handler).await;
    let mut cfg = ClientConfig::new(
        server.endpoint(),
        Auth::api_token("waddle@pve!ci=00000000-0000-4000-8000-000000000001").unwrap(),
    );
    cfg.ca_cert_pem = Some(server.ca_pem.clone());
    let c = Client::new(cfg).unwrap();
    let mut spec = VmSpec::new("cp", 3, 8192);
    spec.vmid = Some(150);
    let mut d = DiskSpec::import(0, "local-lvm", "local:import/talos.raw");
    d.size_gib = 10;
    spec.disks.push(d);
    assert_eq!(c.create_vm("pve-b", &spec).await.unwrap(), 150);
    let resize = server
        .requests()
        .into_iter()
        .find(|r| r.path().ends_with("/resize"))
        .expect("imported disk grown");
    assert_eq!(resize.param("disk").as_deref(), Some("scsi0"));
    assert_eq!(resize.param("size").as_deref(), Some("10G"));

    assert_eq!(
        c.shutdown_and_delete_vm(
            150,
            Duration::from_secs(5),
            &waddle_proxmox::OwnerMark::new(&["test", "cp"]),
            Some("cp")
        )
        .await
        .unwrap(),
        DeleteOutcome::Deleted
    );
    let del = server
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(del.path(), "/api2/json/nodes/pve-b/qemu/150");
    assert_eq!(del.param("purge").as_deref(), Some("1"));
    assert_eq!(
        del.param("destroy-unreferenced-disks").as_deref(),
        Some("1")
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| !r.path().contains("pve-a")),
        "the LXC with the same id on another node is not touched"
    );
    // absent VM
    let c2 = c.clone();
    assert!(c2.locate_vm(999).await.unwrap().is_none());
}
