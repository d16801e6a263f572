//! PVE emulator: the firewall API as `pve-firewall` behaves (rules inserted at the top,
//! positions that shift, list digests, `moveto`, rule checks) and the host input filter on
//! new connections: with the cluster firewall on and `policy_in` DROP/REJECT, a client whose
//! (loopback) source address no rule accepts is dropped or reset; the `management` IP set and
//! the node's local network reach port 8006; host rules come before the management set.

#[path = "pve_support.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use support::*;
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator, Timings};

const ADMIN: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// An emulator on `ip:8006` (the API port the management IP set opens) and an admin client
/// connecting from 127.0.0.2.
async fn start_on(ip: Ipv4Addr) -> Api {
    let emu = PveEmulator::start(
        EmulatorConfig::builder()
            .timings(Timings::fast())
            .listen(SocketAddr::new(IpAddr::V4(ip), 8006))
            .build(),
    )
    .await
    .expect("emulator starts");
    let http = bound_client(emu.ca_pem(), ADMIN, Duration::from_secs(30));
    let token = emu.api_token().expect("token");
    Api { emu, http, token }
}

fn bound_client(ca: &str, from: IpAddr, timeout: Duration) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca pem");
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .local_address(from)
        .connect_timeout(timeout)
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// One request on a new connection from `from` that should be answered: `Ok(status)` or the
/// transport error text. The bound is generous: a TLS handshake with the debug-built emulator
/// on a loaded machine can take more than a second.
async fn probe(api: &Api, from: IpAddr) -> Result<u16, String> {
    probe_within(api, from, Duration::from_secs(15)).await
}

/// A probe that should get no answer (DROP: silence until the 700 ms timeout; REJECT: a reset).
/// The emulator must have recorded the refusal too, so a slow answer cannot pass for a DROP.
async fn probe_refused(api: &Api, from: IpAddr) -> Result<u16, String> {
    let before = api.emu.firewall_refusals().len();
    let r = probe_within(api, from, Duration::from_millis(700)).await;
    let refused = api.emu.firewall_refusals();
    assert!(
        refused.len() > before && refused.last().map(|f| f.source) == Some(from),
        "the host firewall recorded no refusal of {from}: {r:?}"
    );
    r
}

async fn probe_within(api: &Api, from: IpAddr, timeout: Duration) -> Result<u16, String> {
    let c = bound_client(api.emu.ca_pem(), from, timeout);
    match c
        .get(api.url("/version"))
        .header("Authorization", format!("PVEAPIToken={}", api.token))
        .send()
        .await
    {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(format!("{e:?}")),
    }
}

fn comments(rules: &Value) -> Vec<String> {
    rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["comment"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn rules_shift_when_inserted_above_and_changes_need_the_current_digest() {
    let api = start_on(Ipv4Addr::new(127, 10, 71, 1)).await;
    let rules = "/nodes/pve/firewall/rules";
    for c in ["waddle:a", "waddle:b"] {
        api.ok(
            "POST",
            rules,
            &[
                ("type", "in"),
                ("action", "ACCEPT"),
                ("proto", "tcp"),
                ("dport", "22"),
                ("comment", c),
            ],
        )
        .await;
    }
    let list = api.ok("GET", rules, &[]).await;
    assert_eq!(
        comments(&list),
        ["waddle:b", "waddle:a"],
        "POST inserts at the top"
    );
    assert_eq!(list[0]["enable"], 0, "enable defaults to 0 when not sent");
    assert_eq!(list[1]["pos"], 1);
    let digest = list[0]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        list[1]["digest"], list[0]["digest"],
        "one digest for the list"
    );

    // Someone inserts a rule above: every position shifts, the old digest is refused.
    api.ok(
        "POST",
        rules,
        &[
            ("type", "in"),
            ("action", "DROP"),
            ("comment", "by hand"),
            ("enable", "1"),
        ],
    )
    .await;
    let list = api.ok("GET", rules, &[]).await;
    assert_eq!(comments(&list), ["by hand", "waddle:b", "waddle:a"]);
    let r = api
        .call("DELETE", &format!("{rules}/1"), &[("digest", &digest)])
        .await;
    assert_eq!(r.status, 500, "a stale digest must be refused: {}", r.body);
    assert!(
        r.reason.contains("detected modified configuration"),
        "{}",
        r.reason
    );
    // With the current digest: PUT replaces fields, `delete` removes them.
    let d = list[0]["digest"].as_str().unwrap().to_string();
    api.ok(
        "PUT",
        &format!("{rules}/1"),
        &[
            ("digest", &d),
            ("enable", "1"),
            ("source", "10.0.0.0/8"),
            ("delete", "dport,proto"),
        ],
    )
    .await;
    let b = api.ok("GET", &format!("{rules}/1"), &[]).await;
    assert_eq!(b["comment"], "waddle:b");
    assert_eq!(b["enable"], 1);
    assert_eq!(b["source"], "10.0.0.0/8");
    assert!(b.get("dport").is_none() && b.get("proto").is_none(), "{b}");
    assert_eq!(b["ipversion"], 4);
    // moveto as PVE moves: before the rule at the old index, or last.
    api.ok("PUT", &format!("{rules}/0"), &[("moveto", "9")])
        .await;
    assert_eq!(
        comments(&api.ok("GET", rules, &[]).await),
        ["waddle:b", "waddle:a", "by hand"]
    );
    api.ok("PUT", &format!("{rules}/2"), &[("moveto", "0")])
        .await;
    assert_eq!(
        comments(&api.ok("GET", rules, &[]).await),
        ["by hand", "waddle:b", "waddle:a"]
    );

    // Rule checks.
    for (form, field) in [
        (
            vec![("type", "in"), ("action", "ACCEPT"), ("dport", "22")],
            "proto",
        ),
        (
            vec![("type", "in"), ("action", "ACCEPT"), ("source", "+nope")],
            "source",
        ),
        (
            vec![
                ("type", "in"),
                ("action", "ACCEPT"),
                ("macro", "NoSuchMacro"),
            ],
            "macro",
        ),
    ] {
        let r = api.call("POST", rules, &form).await;
        assert_eq!(r.status, 400, "{form:?}: {}", r.body);
        assert!(
            r.body["errors"].get(field).is_some(),
            "{form:?}: {}",
            r.body
        );
    }
    api.ok(
        "POST",
        rules,
        &[("type", "in"), ("action", "ACCEPT"), ("macro", "ssh")],
    )
    .await;
    assert_eq!(
        api.ok("GET", &format!("{rules}/0"), &[]).await["macro"],
        "SSH"
    );

    // Security groups: rules at /groups/{group}/{pos}; a group with rules is not deleted.
    api.ok(
        "POST",
        "/cluster/firewall/groups",
        &[("group", "ops"), ("comment", "waddle")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/firewall/groups/ops",
        &[("type", "in"), ("action", "ACCEPT"), ("macro", "SSH")],
    )
    .await;
    let g = api.ok("GET", "/cluster/firewall/groups/ops", &[]).await;
    assert_eq!(g[0]["macro"], "SSH");
    let r = api
        .call("DELETE", "/cluster/firewall/groups/ops", &[])
        .await;
    assert_eq!(r.status, 500, "{}", r.body);
    api.ok("DELETE", "/cluster/firewall/groups/ops/0", &[])
        .await;
    api.ok("DELETE", "/cluster/firewall/groups/ops", &[]).await;
    api.assert_no_violations();
}

#[tokio::test]
async fn the_host_firewall_drops_or_resets_connections_from_sources_it_does_not_accept() {
    let api = start_on(Ipv4Addr::new(127, 10, 71, 2)).await;
    assert_eq!(
        probe(&api, OTHER).await,
        Ok(200),
        "firewall off: everyone gets in"
    );
    // Accept the admin's address on the API port, then switch the firewall on, policy DROP.
    api.ok("POST", "/cluster/firewall/ipset", &[("name", "operators")])
        .await;
    api.ok(
        "POST",
        "/cluster/firewall/ipset/operators",
        &[("cidr", "127.0.0.2")],
    )
    .await;
    api.ok(
        "POST",
        "/nodes/pve/firewall/rules",
        &[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("source", "+operators"),
            ("proto", "tcp"),
            ("dport", "8006"),
            ("enable", "1"),
        ],
    )
    .await;
    // A disabled rule for the other address counts for nothing.
    api.ok(
        "POST",
        "/nodes/pve/firewall/rules",
        &[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("source", "127.0.0.3"),
            ("proto", "tcp"),
            ("dport", "8006"),
        ],
    )
    .await;
    api.ok(
        "PUT",
        "/cluster/firewall/options",
        &[("enable", "1"), ("policy_in", "DROP")],
    )
    .await;

    assert_eq!(
        probe(&api, ADMIN).await,
        Ok(200),
        "the accepted source gets in"
    );
    let e = probe_refused(&api, OTHER)
        .await
        .expect_err("a dropped source must not get an answer");
    assert!(
        e.contains("imeout") || e.contains("TimedOut"),
        "DROP is silence: {e}"
    );
    let refused = api.emu.firewall_refusals();
    assert_eq!(
        refused.last().map(|r| (r.source, r.verdict)),
        Some((OTHER, "DROP"))
    );

    // REJECT: reset at once.
    api.ok(
        "PUT",
        "/cluster/firewall/options",
        &[("policy_in", "REJECT")],
    )
    .await;
    let e = probe_refused(&api, OTHER)
        .await
        .expect_err("a rejected source must not get an answer");
    assert!(
        !e.contains("imeout") && !e.contains("TimedOut"),
        "REJECT resets at once, it does not leave the client waiting: {e}"
    );
    assert_eq!(
        api.emu.firewall_refusals().last().map(|r| r.verdict),
        Some("REJECT")
    );

    // The management IP set reaches 8006 even with policy DROP...
    api.ok("PUT", "/cluster/firewall/options", &[("policy_in", "DROP")])
        .await;
    api.ok("POST", "/cluster/firewall/ipset", &[("name", "management")])
        .await;
    api.ok(
        "POST",
        "/cluster/firewall/ipset/management",
        &[("cidr", "127.0.0.3/32")],
    )
    .await;
    assert_eq!(
        probe(&api, OTHER).await,
        Ok(200),
        "management reaches the API"
    );
    // ...but host rules come first: a DROP rule above wins over the management set.
    api.ok(
        "POST",
        "/nodes/pve/firewall/rules",
        &[
            ("type", "in"),
            ("action", "DROP"),
            ("source", "127.0.0.3"),
            ("enable", "1"),
        ],
    )
    .await;
    assert!(
        probe_refused(&api, OTHER).await.is_err(),
        "a host DROP rule precedes management"
    );
    // The node's host firewall switched off: no filter.
    api.ok("PUT", "/nodes/pve/firewall/options", &[("enable", "0")])
        .await;
    assert_eq!(probe(&api, OTHER).await, Ok(200));
    api.ok("PUT", "/nodes/pve/firewall/options", &[("enable", "1")])
        .await;
    assert!(probe_refused(&api, OTHER).await.is_err());
    api.ok("PUT", "/cluster/firewall/options", &[("enable", "0")])
        .await;
    assert_eq!(probe(&api, OTHER).await, Ok(200), "cluster firewall off");
    api.assert_no_violations();
}
