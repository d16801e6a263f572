//! Every read endpoint the emulator implements, with state in it, answers in the shape the
//! schema's `returns` describes (the emulator validates each response; none may violate).

#[path = "pve_support.rs"]
mod support;

use std::time::Duration;

use support::*;

#[tokio::test]
async fn every_implemented_read_matches_returns() {
    let api = start(fast().nodes(&["pve", "pve2"]).build()).await;
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/storage/local/download-url",
            &[
                ("content", "import"),
                ("filename", "img.qcow2"),
                ("url", "https://example.invalid/img.qcow2"),
            ],
        )
        .await;
    api.wait_task(upid.as_str().expect("upid")).await;
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/qemu",
            &[
                ("vmid", "150"),
                ("name", "tour"),
                ("agent", "1"),
                ("tags", "a;b"),
                ("scsi0", "local-lvm:0,import-from=local:import/img.qcow2"),
                ("ide2", "local-lvm:cloudinit"),
                ("net0", "virtio,bridge=vmbr0"),
                ("ipconfig0", "ip=dhcp"),
                ("start", "1"),
            ],
        )
        .await;
    let upid = upid.as_str().expect("upid").to_string();
    api.wait_task(&upid).await;
    for _ in 0..300 {
        if api
            .call("POST", "/nodes/pve/qemu/150/agent/ping", &[])
            .await
            .status
            == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.ok(
        "POST",
        "/nodes/pve/qemu/150/agent/file-write",
        &[("file", "/etc/hostname"), ("content", "tour\n")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/sdn/zones",
        &[("zone", "z1"), ("type", "simple")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/sdn/vnets",
        &[("vnet", "v1"), ("zone", "z1")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/sdn/vnets/v1/subnets",
        &[
            ("subnet", "10.30.0.0/24"),
            ("type", "subnet"),
            ("gateway", "10.30.0.1"),
        ],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/firewall/rules",
        &[
            ("type", "in"),
            ("action", "DROP"),
            ("source", "198.51.100.0/24"),
        ],
    )
    .await;
    api.ok("POST", "/cluster/firewall/ipset", &[("name", "set1")])
        .await;
    api.ok(
        "POST",
        "/cluster/firewall/ipset/set1",
        &[("cidr", "192.0.2.1"), ("comment", "x")],
    )
    .await;
    api.ok(
        "PUT",
        "/nodes/pve/qemu/150/firewall/options",
        &[("enable", "1")],
    )
    .await;
    api.ok(
        "POST",
        "/nodes/pve/qemu/150/firewall/rules",
        &[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("proto", "tcp"),
            ("dport", "443"),
        ],
    )
    .await;
    api.ok(
        "POST",
        "/nodes/pve/network",
        &[("iface", "vmbr2"), ("type", "bridge")],
    )
    .await;

    let enc = url_encode(&upid);
    let reads: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/version".into(), vec![]),
        ("/nodes".into(), vec![]),
        ("/cluster/nextid".into(), vec![]),
        ("/cluster/resources".into(), vec![]),
        ("/cluster/resources".into(), vec![("type", "vm")]),
        ("/cluster/resources".into(), vec![("type", "storage")]),
        ("/cluster/resources".into(), vec![("type", "sdn")]),
        ("/nodes/pve/qemu".into(), vec![]),
        ("/nodes/pve/qemu/150".into(), vec![]),
        ("/nodes/pve/qemu/150/config".into(), vec![]),
        ("/nodes/pve/qemu/150/config".into(), vec![("current", "1")]),
        ("/nodes/pve/qemu/150/pending".into(), vec![]),
        ("/nodes/pve/qemu/150/status".into(), vec![]),
        ("/nodes/pve/qemu/150/status/current".into(), vec![]),
        (
            "/nodes/pve/qemu/150/agent/network-get-interfaces".into(),
            vec![],
        ),
        ("/nodes/pve/qemu/150/agent/get-osinfo".into(), vec![]),
        ("/nodes/pve/qemu/150/agent/get-host-name".into(), vec![]),
        (
            "/nodes/pve/qemu/150/agent/file-read".into(),
            vec![("file", "/etc/hostname")],
        ),
        ("/nodes/pve/qemu/150/firewall/options".into(), vec![]),
        ("/nodes/pve/qemu/150/firewall/rules".into(), vec![]),
        ("/nodes/pve/qemu/150/firewall/rules/0".into(), vec![]),
        ("/nodes/pve/tasks".into(), vec![]),
        ("/nodes/pve/tasks".into(), vec![("vmid", "150")]),
        (format!("/nodes/pve/tasks/{enc}"), vec![]),
        (format!("/nodes/pve/tasks/{enc}/status"), vec![]),
        (
            format!("/nodes/pve/tasks/{enc}/log"),
            vec![("start", "0"), ("limit", "0")],
        ),
        ("/nodes/pve/storage".into(), vec![]),
        ("/nodes/pve/storage".into(), vec![("content", "images")]),
        ("/nodes/pve/storage/local/status".into(), vec![]),
        ("/nodes/pve/storage/local/content".into(), vec![]),
        (
            "/nodes/pve/storage/local-lvm/content".into(),
            vec![("vmid", "150")],
        ),
        (
            format!(
                "/nodes/pve/storage/local/content/{}",
                url_encode("local:import/img.qcow2")
            ),
            vec![],
        ),
        ("/nodes/pve/network".into(), vec![]),
        ("/nodes/pve/network".into(), vec![("type", "any_bridge")]),
        ("/nodes/pve/network/vmbr0".into(), vec![]),
        ("/cluster/sdn".into(), vec![]),
        ("/cluster/sdn/zones".into(), vec![("pending", "1")]),
        ("/cluster/sdn/zones/z1".into(), vec![]),
        ("/cluster/sdn/vnets".into(), vec![("pending", "1")]),
        ("/cluster/sdn/vnets/v1".into(), vec![]),
        ("/cluster/sdn/vnets/v1/subnets".into(), vec![]),
        (
            "/cluster/sdn/vnets/v1/subnets/z1-10.30.0.0-24".into(),
            vec![],
        ),
        ("/cluster/firewall/options".into(), vec![]),
        ("/cluster/firewall/rules".into(), vec![]),
        ("/cluster/firewall/rules/0".into(), vec![]),
        ("/cluster/firewall/ipset".into(), vec![]),
        ("/cluster/firewall/ipset/set1".into(), vec![]),
        ("/cluster/firewall/ipset/set1/192.0.2.1".into(), vec![]),
        ("/nodes/pve/firewall/options".into(), vec![]),
        ("/nodes/pve/firewall/rules".into(), vec![]),
        ("/nodes/pve2/storage".into(), vec![]),
    ];
    for (path, q) in &reads {
        api.ok("GET", path, q).await;
    }
    api.assert_no_violations();
    // every request above was recorded against its schema template
    let log = api.emu.request_log();
    assert!(log.iter().all(|r| r.template.is_some()), "{log:#?}");
}
