//! PVE emulator: auth, schema refusals, keep-alive, tasks, locks, network/SDN/firewall, faults.

#[path = "pve_support.rs"]
mod support;

use std::time::Duration;

use support::*;
use waddle_acceptance::pve::{FaultConfig, FaultKind, TokenSpec, UserSpec};

#[tokio::test]
async fn token_auth_and_privileges() {
    let api = start(
        fast()
            .token(TokenSpec::with_privileges(
                "audit@pve",
                "ro",
                "s3cret",
                &[("/vms", &["VM.Audit"])],
            ))
            .build(),
    )
    .await;
    // good token
    let v = api.ok("GET", "/version", &[]).await;
    assert_eq!(v["release"], "9.1");
    // bad secret
    let r = api
        .call_with(Some("root@pam!waddle=wrong"), "GET", "/version", &[])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.reason, "authentication failure");
    // no credentials
    let r = api.call_with(None, "GET", "/cluster/nextid", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.reason, "No ticket");
    // missing privilege
    let r = api
        .call_with(
            Some("audit@pve!ro=s3cret"),
            "POST",
            "/nodes/pve/qemu",
            &[("vmid", "100")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.reason, "Permission check failed (/vms/100, VM.Allocate)");
    // guest agent privilege (PVE 9 VM.GuestAgent.*)
    let r = api
        .call_with(
            Some("audit@pve!ro=s3cret"),
            "POST",
            "/nodes/pve/qemu/100/agent/ping",
            &[],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.reason.contains("VM.GuestAgent.Audit"), "{}", r.reason);
    api.assert_no_violations();
}

#[tokio::test]
async fn ticket_auth_requires_csrf_on_writes() {
    let api = start(fast().user(UserSpec::full("admin@pve", "pw")).build()).await;
    let r = api.login("admin@pve", "nope").await;
    assert_eq!(r.status, 401);
    let t = api.login("admin@pve", "pw").await;
    assert_eq!(t.status, 200);
    let ticket = t.body["data"]["ticket"]
        .as_str()
        .expect("ticket")
        .to_string();
    let csrf = t.body["data"]["CSRFPreventionToken"]
        .as_str()
        .expect("csrf")
        .to_string();
    let cookie = format!("PVEAuthCookie={}", url_encode(&ticket));
    // the ticket renews itself when passed as the password
    let renewed = api.login("admin@pve", &ticket).await;
    assert_eq!(renewed.status, 200);
    let r = api.login("root@pam", &ticket).await;
    assert_eq!(r.status, 401, "another user's ticket is no password");
    // GET with the cookie alone works
    let r = api
        .http
        .get(api.url("/cluster/nextid"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    // POST without CSRF token is refused
    let r = api
        .http
        .post(api.url("/nodes/pve/network"))
        .header("Cookie", &cookie)
        .form(&[("iface", "vmbr1"), ("type", "bridge")])
        .send()
        .await
        .expect("send");
    let r = into_resp(r).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.reason, "Permission denied - invalid csrf token");
    // with it, accepted
    let r = api
        .http
        .post(api.url("/nodes/pve/network"))
        .header("Cookie", &cookie)
        .header("CSRFPreventionToken", &csrf)
        .form(&[("iface", "vmbr1"), ("type", "bridge")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    api.assert_no_violations();
}

#[tokio::test]
async fn schema_refusals_carry_errors_map() {
    let api = start(fast().build()).await;
    let r = api
        .call(
            "POST",
            "/nodes/pve/qemu",
            &[
                ("vmid", "105"),
                ("bogus", "1"),
                ("net0", "virtio,bridge=vmbr0,colour=red"),
                ("memory", "abc"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.reason, "Parameter verification failed.");
    let e = &r.body["errors"];
    assert!(e["bogus"]
        .as_str()
        .expect("bogus")
        .contains("not defined in schema"));
    assert!(e["net0"].as_str().expect("net0").contains("colour"));
    assert!(e["memory"].is_string());
    assert!(r.body["data"].is_null());
    // bad vmid in the path
    let r = api.call("GET", "/nodes/pve/qemu/42/config", &[]).await;
    assert_eq!(r.status, 400);
    assert!(r.body["errors"]["vmid"]
        .as_str()
        .expect("vmid")
        .contains("minimum"));
    // unknown path
    let r = api.call("GET", "/nodes/pve/nonsense", &[]).await;
    assert_eq!(r.status, 501);
    // missing VM
    let r = api.call("GET", "/nodes/pve/qemu/105/config", &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.reason,
        "Configuration file 'nodes/pve/qemu-server/105.conf' does not exist"
    );
    api.assert_no_violations();
}

#[tokio::test]
async fn connection_closed_after_error_and_when_idle() {
    let api = start(fast().build()).await;
    api.ok("GET", "/version", &[]).await;
    api.ok("GET", "/version", &[]).await;
    assert_eq!(
        api.emu.connections_accepted(),
        1,
        "keep-alive reuses the connection"
    );
    let r = api.call("GET", "/nodes/pve/qemu/105/config", &[]).await;
    assert_eq!(r.status, 500);
    api.ok("GET", "/version", &[]).await;
    assert_eq!(
        api.emu.connections_accepted(),
        2,
        "closed after a >= 400 answer"
    );
    // idle timeout is 300 ms with Timings::fast()
    tokio::time::sleep(Duration::from_millis(700)).await;
    api.ok("GET", "/version", &[]).await;
    assert_eq!(
        api.emu.connections_accepted(),
        3,
        "idle connection was closed by the server"
    );
}

#[tokio::test]
async fn lock_contention_under_parallel_writes() {
    let mut t = waddle_acceptance::pve::Timings::fast();
    t.config_write = Duration::from_millis(150);
    t.lock_timeout = Duration::from_millis(100);
    let api = start(fast().timings(t).build()).await;
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/qemu",
            &[("vmid", "105"), ("memory", "512")],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let futs = (0..4).map(|i| {
        let api = &api;
        async move {
            let desc = format!("d{i}");
            api.call(
                "PUT",
                "/nodes/pve/qemu/105/config",
                &[("description", desc.as_str())],
            )
            .await
        }
    });
    let results = futures_util::future::join_all(futs).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    let locked: Vec<_> = results.iter().filter(|r| r.status == 500).collect();
    assert!(ok >= 1, "at least one write wins");
    assert!(!locked.is_empty(), "parallel writes hit the lock");
    for r in locked {
        assert_eq!(
            r.reason,
            "can't lock file '/var/lock/qemu-server/lock-105.conf' - got timeout"
        );
    }
    api.assert_no_violations();
}

#[tokio::test]
async fn tasks_have_upids_status_and_logs() {
    let api = start(fast().build()).await;
    let upid = api
        .ok("POST", "/nodes/pve/storage/local/download-url", &[
            ("content", "import"),
            ("filename", "debian-12-genericcloud-amd64.qcow2"),
            ("url", "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"),
            ("checksum", "abc"),
            ("checksum-algorithm", "sha512"),
        ])
        .await;
    let upid = upid.as_str().expect("upid").to_string();
    assert!(upid.starts_with("UPID:pve:"), "{upid}");
    assert!(
        upid.contains(":download:") && upid.ends_with(":root@pam!waddle:"),
        "{upid}"
    );
    assert_eq!(api.wait_task(&upid).await, "OK");
    let log = api
        .ok(
            "GET",
            &format!("/nodes/pve/tasks/{}/log", url_encode(&upid)),
            &[],
        )
        .await;
    let lines: Vec<&str> = log
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["t"].as_str())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("downloading https://cloud.debian.org")),
        "{lines:?}"
    );
    assert_eq!(lines.last(), Some(&"TASK OK"));
    // nothing was fetched: the URL is only recorded
    assert_eq!(api.emu.downloads().len(), 1);
    let content = api
        .ok(
            "GET",
            "/nodes/pve/storage/local/content",
            &[("content", "import")],
        )
        .await;
    assert_eq!(
        content[0]["volid"],
        "local:import/debian-12-genericcloud-amd64.qcow2"
    );
    // wrong content type for the storage
    let r = api
        .call(
            "POST",
            "/nodes/pve/storage/local-lvm/download-url",
            &[
                ("content", "iso"),
                ("filename", "a.iso"),
                ("url", "https://example.invalid/a.iso"),
            ],
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(
        r.reason.contains("does not support content-type 'iso'"),
        "{}",
        r.reason
    );
    let tasks = api.ok("GET", "/nodes/pve/tasks", &[]).await;
    assert!(!tasks.as_array().expect("tasks").is_empty());
    api.assert_no_violations();
}

#[tokio::test]
async fn network_bridge_pending_until_apply() {
    let api = start(fast().build()).await;
    let r = api
        .call(
            "POST",
            "/nodes/pve/network",
            &[("iface", "br-bad"), ("type", "bridge")],
        )
        .await;
    assert_eq!(r.status, 400);
    api.ok(
        "POST",
        "/nodes/pve/network",
        &[
            ("iface", "vmbr1"),
            ("type", "bridge"),
            ("cidr", "10.10.0.1/24"),
            ("autostart", "1"),
            ("comments", "waddle private"),
        ],
    )
    .await;
    let list = api.ok("GET", "/nodes/pve/network", &[]).await;
    let br = list
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["iface"] == "vmbr1")
        .expect("staged")
        .clone();
    assert!(br.get("active").is_none(), "not active before apply: {br}");
    let upid = api.ok("PUT", "/nodes/pve/network", &[]).await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let br = api.ok("GET", "/nodes/pve/network/vmbr1", &[]).await;
    assert_eq!(br["active"], 1);
    assert_eq!(br["address"], "10.10.0.1");
    api.assert_no_violations();
}

#[tokio::test]
async fn sdn_zone_vnet_subnet_and_apply() {
    let api = start(fast().build()).await;
    api.ok(
        "POST",
        "/cluster/sdn/zones",
        &[("zone", "waddle"), ("type", "simple"), ("dhcp", "dnsmasq")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/sdn/vnets",
        &[("vnet", "wnet0"), ("zone", "waddle")],
    )
    .await;
    let r = api
        .call(
            "POST",
            "/cluster/sdn/vnets/wnet0/subnets",
            &[
                ("subnet", "10.10.0.0/24"),
                ("type", "subnet"),
                ("gateway", "10.20.0.1"),
            ],
        )
        .await;
    assert_eq!(r.status, 500, "gateway outside the subnet");
    api.ok(
        "POST",
        "/cluster/sdn/vnets/wnet0/subnets",
        &[
            ("subnet", "10.10.0.0/24"),
            ("type", "subnet"),
            ("gateway", "10.10.0.1"),
            ("snat", "1"),
        ],
    )
    .await;
    let zones = api
        .ok("GET", "/cluster/sdn/zones", &[("pending", "1")])
        .await;
    assert_eq!(zones[0]["state"], "new");
    // As pve-network's pending_config shows a new object: its values under `pending`, only
    // `type`, `vnet` and the id's keys at the top level.
    assert_eq!(zones[0]["zone"], "waddle");
    assert!(zones[0].get("dhcp").is_none(), "{zones}");
    assert_eq!(zones[0]["pending"]["dhcp"], "dnsmasq", "{zones}");
    let vnets = api
        .ok("GET", "/cluster/sdn/vnets", &[("pending", "1")])
        .await;
    assert!(vnets[0].get("zone").is_none(), "{vnets}");
    assert_eq!(vnets[0]["pending"]["zone"], "waddle", "{vnets}");
    let subnets = api
        .ok(
            "GET",
            "/cluster/sdn/vnets/wnet0/subnets",
            &[("pending", "1")],
        )
        .await;
    assert_eq!(subnets[0]["cidr"], "10.10.0.0/24", "{subnets}");
    assert_eq!(subnets[0]["pending"]["gateway"], "10.10.0.1", "{subnets}");
    let upid = api.ok("PUT", "/cluster/sdn", &[]).await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let zones = api
        .ok("GET", "/cluster/sdn/zones", &[("pending", "1")])
        .await;
    assert!(zones[0].get("state").is_none(), "{zones}");
    assert_eq!(
        zones[0]["dhcp"], "dnsmasq",
        "applied: values at the top level"
    );
    // A change shows the running value at the top and the new one under `pending`.
    api.ok("PUT", "/cluster/sdn/vnets/wnet0", &[("alias", "private")])
        .await;
    let vnets = api
        .ok("GET", "/cluster/sdn/vnets", &[("pending", "1")])
        .await;
    assert_eq!(vnets[0]["state"], "changed", "{vnets}");
    assert!(vnets[0].get("alias").is_none(), "{vnets}");
    assert_eq!(vnets[0]["pending"]["alias"], "private", "{vnets}");
    let subnets = api.ok("GET", "/cluster/sdn/vnets/wnet0/subnets", &[]).await;
    assert_eq!(subnets[0]["subnet"], "waddle-10.10.0.0-24");
    assert_eq!(subnets[0]["snat"], 1);
    let r = api.call("DELETE", "/cluster/sdn/zones/waddle", &[]).await;
    assert_eq!(r.status, 500, "zone in use");
    api.assert_no_violations();
}

#[tokio::test]
async fn firewall_rules_by_position_and_ipsets() {
    let api = start(fast().build()).await;
    // With the policy DROP, the host firewall drops new connections no rule accepts: keep
    // the test's own client (127.0.0.1) accepted, as an operator must.
    api.ok(
        "POST",
        "/nodes/pve/firewall/rules",
        &[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("source", "127.0.0.1"),
            ("enable", "1"),
        ],
    )
    .await;
    api.ok(
        "PUT",
        "/cluster/firewall/options",
        &[("enable", "1"), ("policy_in", "DROP")],
    )
    .await;
    let o = api.ok("GET", "/cluster/firewall/options", &[]).await;
    assert_eq!(o["enable"], 1);
    assert_eq!(o["policy_in"], "DROP");
    api.ok(
        "POST",
        "/cluster/firewall/rules",
        &[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("proto", "tcp"),
            ("dport", "443"),
            ("enable", "1"),
        ],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/firewall/rules",
        &[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("proto", "tcp"),
            ("dport", "80"),
            ("enable", "1"),
        ],
    )
    .await;
    let rules = api.ok("GET", "/cluster/firewall/rules", &[]).await;
    assert_eq!(rules[0]["dport"], "80", "new rules go to the top");
    assert_eq!(rules[1]["pos"], 1);
    // PVE puts the moved rule before the rule at the old index `moveto` (or last): moving
    // the top rule below the second one takes `moveto=2` (`moveto=1` changes nothing).
    api.ok("PUT", "/cluster/firewall/rules/0", &[("moveto", "1")])
        .await;
    let rules = api.ok("GET", "/cluster/firewall/rules", &[]).await;
    assert_eq!(rules[0]["dport"], "80");
    api.ok("PUT", "/cluster/firewall/rules/0", &[("moveto", "2")])
        .await;
    let rules = api.ok("GET", "/cluster/firewall/rules", &[]).await;
    assert_eq!(rules[0]["dport"], "443");
    api.ok("DELETE", "/cluster/firewall/rules/1", &[]).await;
    assert_eq!(
        api.ok("GET", "/cluster/firewall/rules", &[])
            .await
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    api.ok(
        "POST",
        "/cluster/firewall/ipset",
        &[("name", "waddle-admins"), ("comment", "ops")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/firewall/ipset/waddle-admins",
        &[("cidr", "192.0.2.0/24")],
    )
    .await;
    let r = api
        .call(
            "POST",
            "/cluster/firewall/ipset/waddle-admins",
            &[("cidr", "not-an-ip!")],
        )
        .await;
    assert_eq!(r.status, 400);
    let entries = api
        .ok("GET", "/cluster/firewall/ipset/waddle-admins", &[])
        .await;
    assert_eq!(entries[0]["cidr"], "192.0.2.0/24");
    // node level
    api.ok(
        "PUT",
        "/nodes/pve/firewall/options",
        &[("enable", "1"), ("nftables", "1")],
    )
    .await;
    api.ok(
        "POST",
        "/nodes/pve/firewall/rules",
        &[("type", "in"), ("action", "ACCEPT"), ("macro", "SSH")],
    )
    .await;
    assert_eq!(
        api.ok("GET", "/nodes/pve/firewall/rules", &[]).await[0]["macro"],
        "SSH"
    );
    api.assert_no_violations();
}

#[tokio::test]
async fn faults_are_deterministic_by_seed() {
    async fn run(seed: u64) -> Vec<u16> {
        let api = start(
            fast()
                .faults(FaultConfig::new(seed).with(
                    "GET /cluster/nextid",
                    FaultKind::NoWorkerUpid,
                    0.4,
                ))
                .build(),
        )
        .await;
        let mut out = Vec::new();
        for _ in 0..30 {
            out.push(api.call("GET", "/cluster/nextid", &[]).await.status);
        }
        let log = api.emu.fault_log();
        assert_eq!(log.len(), out.iter().filter(|s| **s == 500).count());
        out
    }
    let a = run(7).await;
    assert_eq!(a, run(7).await, "same seed, same faults");
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
    assert_ne!(a, run(8).await, "another seed differs");
}

#[tokio::test]
async fn dropped_connection_and_failed_task_faults() {
    let api = start(
        fast()
            .faults(
                FaultConfig::new(1)
                    .rule(
                        waddle_acceptance::pve::FaultRule::new(
                            "GET /version",
                            FaultKind::DropConnection,
                            1.0,
                        )
                        .max_hits(1),
                    )
                    .with(
                        "POST /nodes/{node}/storage/{storage}/download-url",
                        FaultKind::FailTask("download failed: 404 Not Found".into()),
                        1.0,
                    ),
            )
            .build(),
    )
    .await;
    let err = api
        .http
        .get(api.url("/version"))
        .header("Authorization", format!("PVEAPIToken={}", api.token))
        .send()
        .await;
    assert!(err.is_err(), "the first request loses its connection");
    api.ok("GET", "/version", &[]).await;
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/storage/local/download-url",
            &[
                ("content", "iso"),
                ("filename", "x.iso"),
                ("url", "https://example.invalid/x.iso"),
            ],
        )
        .await;
    assert_eq!(
        api.wait_task(upid.as_str().expect("upid")).await,
        "download failed: 404 Not Found"
    );
    // a lost response: the create happened, the client never heard of it
    api.emu.set_faults(FaultConfig::new(1).with(
        "POST /nodes/{node}/qemu",
        FaultKind::DropResponse,
        1.0,
    ));
    let lost = api
        .http
        .post(api.url("/nodes/pve/qemu"))
        .header("Authorization", format!("PVEAPIToken={}", api.token))
        .form(&[("vmid", "131")])
        .send()
        .await;
    assert!(lost.is_err(), "no response");
    let mut seen = false;
    for _ in 0..100 {
        if api
            .emu
            .vm(131)
            .map(|v| !v.config.contains_key("lock"))
            .unwrap_or(false)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "VM 131 exists although the answer was lost");
    let upid = api
        .ok("DELETE", "/nodes/pve/qemu/131", &[("purge", "1")])
        .await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    // a failed create leaves nothing behind
    api.emu.set_faults(FaultConfig::new(1).with(
        "POST /nodes/{node}/qemu",
        FaultKind::FailTask("storage allocation failed".into()),
        1.0,
    ));
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/qemu",
            &[("vmid", "130"), ("scsi0", "local-lvm:4")],
        )
        .await;
    assert_eq!(
        api.wait_task(upid.as_str().expect("upid")).await,
        "unable to create VM 130 - storage allocation failed"
    );
    assert!(api.emu.vms().is_empty());
    assert!(api.emu.volumes().iter().all(|v| v.vmid.is_none()));
    let r = api.call("GET", "/nodes/pve/qemu/130/config", &[]).await;
    assert_eq!(r.status, 500);
    api.assert_no_violations();
}

#[tokio::test]
async fn parallel_creates_on_one_storage_hit_the_cfs_lock() {
    let mut t = waddle_acceptance::pve::Timings::fast();
    t.storage_alloc = Duration::from_millis(120);
    t.storage_lock_timeout = Duration::from_millis(200);
    let api = start(fast().timings(t).build()).await;
    let mut upids = Vec::new();
    for id in 140..146 {
        let vmid = id.to_string();
        let u = api
            .ok(
                "POST",
                "/nodes/pve/qemu",
                &[("vmid", vmid.as_str()), ("scsi0", "local-lvm:1")],
            )
            .await;
        upids.push(u.as_str().expect("upid").to_string());
    }
    let mut failed = 0;
    for u in &upids {
        let st = api.wait_task(u).await;
        if st != "OK" {
            assert!(
                st.ends_with("cfs-lock 'storage-local-lvm' error: got lock request timeout"),
                "{st}"
            );
            failed += 1;
        }
    }
    assert!(
        failed >= 1,
        "six 120 ms allocations cannot all get a 200 ms lock"
    );
    assert!(failed < upids.len(), "the first allocation wins");
    // failed creates left nothing behind
    assert_eq!(api.emu.vms().len(), upids.len() - failed);
    assert_eq!(
        api.emu
            .volumes()
            .iter()
            .filter(|v| v.vmid.is_some())
            .count(),
        upids.len() - failed
    );
    api.assert_no_violations();
}
