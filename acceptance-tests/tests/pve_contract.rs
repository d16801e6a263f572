//! Schema contract: the provider's Proxmox client (`waddle-proxmox`) drives a full VM
//! lifecycle plus network/SDN/firewall operations against the emulator. Every request it
//! sends is validated independently against `apischema.json` (path, method, parameters,
//! property strings) and every response against `returns`. Also prints the API calls per VM
//! create and per destroy.

#[path = "pve_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use waddle_acceptance::pve::{DebianAppliance, EmulatorConfig, PveEmulator, Timings};
use waddle_acceptance::spec::{self, ApiSchema};
use waddle_proxmox as px;

fn check_all(schema: &ApiSchema, recs: &[px::RecordedRequest]) -> Vec<String> {
    let mut problems = Vec::new();
    for r in recs {
        let m = match schema.match_path(&r.method, &r.path) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!(
                    "{} {}: not in the schema ({e:?})",
                    r.method, r.path
                ));
                continue;
            }
        };
        let mut params = match spec::params_from_json(&r.params) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!("{} {}: params: {e}", r.method, r.path));
                continue;
            }
        };
        if m.endpoint.path.ends_with("/upload") {
            // the multipart file part is recorded as its name
            params
                .entry("filename".into())
                .or_insert(spec::ParamValue::One("x.iso".into()));
        }
        for (k, v) in &m.path_params {
            params.insert(k.clone(), spec::ParamValue::One(v.clone()));
        }
        if let Err(e) = schema.validate_params(&m.endpoint, &params) {
            problems.push(format!(
                "{} {}: request refused by the schema: {e:?}",
                r.method, m.endpoint.path
            ));
        }
        if r.status == Some(200) {
            if let Some(data) = r.response.as_ref().and_then(|b| b.get("data")) {
                if let Err(e) = schema.validate_returns(&m.endpoint, data) {
                    problems.push(format!("{} {}: response: {e:?}", r.method, m.endpoint.path));
                }
            }
        }
    }
    problems
}

fn by_template(schema: &ApiSchema, recs: &[px::RecordedRequest]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in recs {
        let key = match schema.match_path(&r.method, &r.path) {
            Ok(m) => m.endpoint.key(),
            Err(_) => format!("{} {}", r.method, r.path),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn client_requests_and_emulator_responses_follow_the_schema() {
    let schema = ApiSchema::shared().expect("schema");
    let mut t = Timings::fast();
    t.boot = Duration::from_millis(50);
    let emu = PveEmulator::start(EmulatorConfig::builder().timings(t).build())
        .await
        .expect("start");
    let recorder = Arc::new(px::MemoryRecorder::new());
    let mut cfg = px::ClientConfig::new(
        emu.endpoint(),
        px::Auth::api_token(&emu.api_token().expect("token")).expect("token parses"),
    );
    cfg.ca_cert_pem = Some(emu.ca_pem().to_string());
    cfg.recorder = Some(recorder.clone());
    let c = px::Client::new(cfg).expect("client");
    let node = "pve";

    c.version().await.expect("version");
    assert!(!c.list_nodes().await.expect("nodes").is_empty());

    // image + seed ISO
    let dl = px::DownloadUrl {
        content: px::ContentType::Import,
        filename: "debian-12-genericcloud-amd64.qcow2".into(),
        url: "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2".into(),
        checksum: None,
        verify_certificates: None,
        compression: None,
    };
    let image = c
        .ensure_image_downloaded(node, "local", &dl, &px::WaitOptions::default())
        .await
        .expect("download");
    let seed = px::nocloud::NoCloudSeed {
        user_data: "#cloud-config\npackages: [qemu-guest-agent]\nusers:\n  - name: admin\n".into(),
        meta_data: "instance-id: iid-300\nlocal-hostname: contract\n".into(),
        network_config: Some(
            "version: 2\nethernets:\n  eth0:\n    addresses: [10.10.0.30/24]\n".into(),
        ),
        vendor_data: None,
    };
    let iso = seed.build_iso(Some(1_700_000_000)).expect("iso");
    // the provider's ISO reads back with the emulator's own reader
    let parsed = waddle_acceptance::pve::read_iso_files(&iso).expect("iso parses");
    assert_eq!(parsed.volume_id, "cidata");
    assert_eq!(
        parsed.files.get("user-data").map(Vec::as_slice),
        Some(seed.user_data.as_bytes())
    );
    let seed_vol = c
        .upload_iso(node, "local", "seed-300.iso", iso, true)
        .await
        .expect("upload");

    // VM create (counted)
    let before_create = recorder.entries().len();
    let mut spec = px::VmSpec::new("contract", 2, 1024);
    spec.vmid = Some(300);
    spec.bios = px::Bios::Ovmf;
    spec.machine = Some("q35".into());
    spec.disks.push(px::DiskSpec {
        size_gib: 10,
        ..px::DiskSpec::import(0, "local-lvm", &image)
    });
    spec.efidisk = Some(px::EfiDiskSpec::new("local-lvm", true));
    spec.tpmstate = Some(px::TpmStateSpec {
        storage: "local-lvm".into(),
    });
    spec.nets.push(px::NetSpec {
        mac: Some("BC:24:11:00:03:00".into()),
        firewall: true,
        ..px::NetSpec::virtio(0, "vmbr0")
    });
    spec.cdroms.push(px::CdromSpec::ide2(&seed_vol));
    spec.tags = vec!["waddle".into()];
    let vmid = c.create_vm(node, &spec).await.expect("create");
    assert_eq!(vmid, 300);
    let create_calls = recorder.entries()[before_create..].to_vec();
    let cfg = c.vm_config(node, vmid).await.expect("config");
    assert!(
        cfg.get_str("scsi0").expect("scsi0").ends_with("size=10G"),
        "{:?}",
        cfg.get_str("scsi0")
    );

    // boot, agent, files, exec
    c.start_vm(node, vmid).await.expect("start");
    c.wait_agent(node, vmid, Duration::from_secs(10), None)
        .await
        .expect("agent");
    let ifaces = c
        .agent_network_interfaces(node, vmid)
        .await
        .expect("ifaces");
    assert!(
        ifaces.iter().any(|i| i.ipv4().any(|a| a == "10.10.0.30")),
        "{ifaces:?}"
    );
    c.agent_file_write(node, vmid, "/etc/motd", "hello\n", true)
        .await
        .expect("file-write");
    let r = c
        .agent_exec(
            node,
            vmid,
            &["cat".to_string(), "/etc/motd".to_string()],
            None,
            Duration::from_secs(5),
            None,
        )
        .await
        .expect("exec");
    assert!(r.success());
    let deb = emu.appliance(vmid).expect("appliance");
    assert_eq!(
        deb.as_any()
            .downcast_ref::<DebianAppliance>()
            .expect("debian")
            .hostname()
            .as_deref(),
        Some("contract")
    );
    let mut upd = px::Params::new();
    upd = upd.str("description", "contract test");
    c.update_vm_config(node, vmid, &upd).await.expect("update");

    // bridge, SDN, firewall
    c.create_bridge(node, &px::BridgeSpec::isolated("vmbr1", "10.10.0.1/24"))
        .await
        .expect("bridge");
    c.apply_network(node).await.expect("apply");
    c.create_sdn_simple_zone("wzone", true, &[])
        .await
        .expect("zone");
    c.create_sdn_vnet("wnet", "wzone", Some("waddle"))
        .await
        .expect("vnet");
    c.create_sdn_subnet(
        "wnet",
        &px::SubnetSpec {
            cidr: "10.20.0.0/24".into(),
            gateway: Some("10.20.0.1".into()),
            snat: true,
            dhcp_ranges: vec![],
        },
    )
    .await
    .expect("subnet");
    c.apply_sdn().await.expect("apply sdn");
    c.set_firewall_enabled(&px::FirewallScope::Cluster, true)
        .await
        .expect("fw");
    c.add_firewall_rule(
        &px::FirewallScope::Node(node.into()),
        &px::FirewallRule {
            direction: "in".into(),
            action: "ACCEPT".into(),
            enable: true,
            proto: Some("tcp".into()),
            dport: Some("8006".into()),
            ..Default::default()
        },
    )
    .await
    .expect("rule");
    c.create_ipset("waddle-admins", Some("ops"))
        .await
        .expect("ipset");
    c.add_ipset_entry(
        "waddle-admins",
        &px::IpSetEntry {
            cidr: "192.0.2.0/24".into(),
            nomatch: false,
            comment: None,
        },
    )
    .await
    .expect("entry");

    // destroy (counted)
    let before_delete = recorder.entries().len();
    let owner = px::OwnerMark::new(&["pve_contract", "contract"]);
    c.shutdown_and_delete_vm(vmid, Duration::from_secs(10), &owner, Some("contract"))
        .await
        .expect("delete");
    let delete_calls = recorder.entries()[before_delete..].to_vec();
    assert!(emu.vms().is_empty());
    assert!(
        emu.volumes().iter().all(|v| v.vmid.is_none()),
        "no disks left"
    );
    c.delete_volume(node, "local", &seed_vol)
        .await
        .expect("delete iso");

    let all = recorder.entries();
    let problems = check_all(&schema, &all);
    assert!(
        problems.is_empty(),
        "schema contract violations:\n{}",
        problems.join("\n")
    );
    assert!(
        emu.response_violations().is_empty(),
        "{:#?}",
        emu.response_violations()
    );
    let refused: Vec<_> = emu
        .request_log()
        .into_iter()
        .filter(|r| r.status == 400)
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    let endpoints = by_template(&schema, &all);
    println!(
        "API calls per VM create: {} {:?}",
        create_calls.len(),
        by_template(&schema, &create_calls)
    );
    println!(
        "API calls per VM destroy: {} {:?}",
        delete_calls.len(),
        by_template(&schema, &delete_calls)
    );
    println!("endpoints exercised ({}): {endpoints:#?}", endpoints.len());
}
