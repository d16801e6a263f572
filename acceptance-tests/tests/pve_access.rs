//! PVE emulator: the access endpoints an operator uses to make a limited API token (the way
//! `pveum user add`, `pveum user token add --privsep`, `pveum acl modify` and `pveum role add`
//! do), and `GET /access/permissions` with token privilege separation.

#[path = "pve_support.rs"]
mod support;

use serde_json::Value;
use support::*;

/// `pveum user add`, `pveum user token add --privsep <privsep>`; returns the token header value.
async fn make_token(api: &Api, userid: &str, tokenid: &str, privsep: &str) -> String {
    let users = api.ok("GET", "/access/users", &[]).await;
    let exists = users
        .as_array()
        .is_some_and(|a| a.iter().any(|u| u["userid"] == userid));
    if !exists {
        api.ok("POST", "/access/users", &[("userid", userid)]).await;
    }
    let t = api
        .ok(
            "POST",
            &format!("/access/users/{userid}/token/{tokenid}"),
            &[("privsep", privsep)],
        )
        .await;
    assert_eq!(t["full-tokenid"], format!("{userid}!{tokenid}"));
    assert_eq!(t["info"]["privsep"], privsep.parse::<i64>().unwrap_or(-1));
    let value = t["value"].as_str().expect("token value");
    format!("{userid}!{tokenid}={value}")
}

/// `pveum acl modify <path> --users|--tokens <who> --roles <role> [--propagate 0]`
async fn acl(api: &Api, path: &str, kind: &str, who: &str, role: &str, propagate: &str) {
    api.ok(
        "PUT",
        "/access/acl",
        &[
            ("path", path),
            (kind, who),
            ("roles", role),
            ("propagate", propagate),
        ],
    )
    .await;
}

fn privs_at(perms: &Value, path: &str) -> Vec<String> {
    perms[path]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

async fn own_permissions(api: &Api, token: &str, path: &str) -> Value {
    let r = api
        .call_with(Some(token), "GET", "/access/permissions", &[("path", path)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["data"].clone()
}

#[tokio::test]
async fn privsep_token_gets_the_intersection_of_user_and_token_acls() {
    let api = start(fast().build()).await;
    // Before: the endpoint the provider's preflight reads is implemented (was 501).
    let root = api
        .ok("GET", "/access/permissions", &[("path", "/vms/100")])
        .await;
    assert_eq!(root["/vms/100"]["VM.Allocate"], 1);

    let tok = make_token(&api, "tf@pve", "plan", "1").await;
    acl(&api, "/", "users", "tf@pve", "PVEVMAdmin", "1").await;
    acl(&api, "/", "tokens", "tf@pve!plan", "PVEVMUser", "1").await;
    let p = own_permissions(&api, &tok, "/vms/100").await;
    let privs = privs_at(&p, "/vms/100");
    assert!(privs.contains(&"VM.PowerMgmt".to_string()), "{p}");
    assert!(
        privs.contains(&"VM.GuestAgent.FileWrite".to_string()),
        "{p}"
    );
    assert!(!privs.contains(&"VM.Allocate".to_string()), "{p}");
    assert_eq!(p["/vms/100"]["VM.PowerMgmt"], 1, "propagated from /");

    // The token is refused what its own ACL lacks, even though its user has it.
    let r = api
        .call_with(Some(&tok), "POST", "/nodes/pve/qemu", &[("vmid", "100")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason, "Permission check failed (/vms/100, VM.Allocate)");

    // privsep=0: the user's privileges.
    let full = make_token(&api, "tf@pve", "full", "0").await;
    let p = own_permissions(&api, &full, "/vms/100").await;
    assert!(privs_at(&p, "/vms/100").contains(&"VM.Allocate".to_string()));

    // A privsep token without an ACL of its own has nothing.
    let bare = make_token(&api, "tf@pve", "bare", "1").await;
    let p = own_permissions(&api, &bare, "/vms/100").await;
    assert!(privs_at(&p, "/vms/100").is_empty(), "{p}");

    // Another user's permissions need Sys.Audit on /access.
    let r = api
        .call_with(
            Some(&tok),
            "GET",
            "/access/permissions",
            &[("userid", "root@pam")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.reason, "Permission check failed (/access, Sys.Audit)");
    // ... but a user's own tokens are fine for root (and anyone with Sys.Audit).
    let p = api
        .ok(
            "GET",
            "/access/permissions",
            &[("userid", "tf@pve!plan"), ("path", "/sdn/zones/z")],
        )
        .await;
    let sdn = privs_at(&p, "/sdn/zones/z");
    assert!(sdn.contains(&"VM.Audit".to_string()), "{p}");
    assert!(!sdn.iter().any(|x| x.starts_with("SDN.")), "{p}");

    // The limited token cannot make users (Realm.AllocateUser on the realm).
    let r = api
        .call_with(Some(&tok), "POST", "/access/users", &[("userid", "x@pve")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.reason,
        "Permission check failed (/access/realm/pve, Realm.AllocateUser)"
    );
    api.assert_no_violations();
}

#[tokio::test]
async fn propagation_overrides_roles_and_whole_tree_dump() {
    let api = start(fast().build()).await;
    let tok = make_token(&api, "ops@pve", "tf", "0").await;
    acl(
        &api,
        "/storage",
        "users",
        "ops@pve",
        "PVEDatastoreUser",
        "0",
    )
    .await;
    acl(&api, "/", "users", "ops@pve", "PVEAuditor", "1").await;
    acl(&api, "/sdn/zones/lab", "users", "ops@pve", "NoAccess", "1").await;
    // custom role (`pveum role add`)
    api.ok(
        "POST",
        "/access/roles",
        &[("roleid", "WaddleSDN"), ("privs", "SDN.Allocate,SDN.Audit")],
    )
    .await;
    acl(
        &api,
        "/sdn/zones/waddle",
        "users",
        "ops@pve",
        "WaddleSDN",
        "1",
    )
    .await;

    let p = own_permissions(&api, &tok, "/storage").await;
    assert_eq!(
        p["/storage"]["Datastore.AllocateSpace"], 0,
        "not propagating"
    );
    let p = own_permissions(&api, &tok, "/storage/local").await;
    assert!(
        !privs_at(&p, "/storage/local").contains(&"Datastore.AllocateSpace".to_string()),
        "{p}"
    );
    assert!(privs_at(&p, "/storage/local").contains(&"Datastore.Audit".to_string()));
    let p = own_permissions(&api, &tok, "/sdn/zones/lab/v1").await;
    assert!(
        privs_at(&p, "/sdn/zones/lab/v1").is_empty(),
        "NoAccess: {p}"
    );
    let p = own_permissions(&api, &tok, "/sdn/zones/waddle/v1").await;
    assert_eq!(
        privs_at(&p, "/sdn/zones/waddle/v1"),
        ["SDN.Allocate", "SDN.Audit"],
        "a deeper entry replaces the inherited PVEAuditor"
    );
    // Without `path`: every top-level path and ACL path where something is held.
    let r = api
        .call_with(Some(&tok), "GET", "/access/permissions", &[])
        .await;
    assert_eq!(r.status, 200);
    let all = &r.body["data"];
    assert!(all.get("/vms").is_some(), "{all}");
    assert!(all.get("/sdn/zones/waddle").is_some(), "{all}");
    assert!(
        all.get("/sdn/zones/lab").is_none(),
        "NoAccess paths are left out: {all}"
    );

    // Built-in roles are the real PVE 9 ones.
    let roles = api.ok("GET", "/access/roles", &[]).await;
    let vmuser = roles
        .as_array()
        .and_then(|a| a.iter().find(|r| r["roleid"] == "PVEVMUser"))
        .expect("PVEVMUser");
    assert_eq!(vmuser["special"], 1);
    let privs = vmuser["privs"].as_str().unwrap_or("");
    assert!(privs.contains("VM.GuestAgent.FileWrite"), "{privs}");
    assert!(!privs.contains("VM.GuestAgent.Unrestricted"), "{privs}");
    let acls = api.ok("GET", "/access/acl", &[]).await;
    assert!(
        acls.as_array()
            .is_some_and(|a| a.iter().any(|e| e["path"] == "/storage"
                && e["ugid"] == "ops@pve"
                && e["propagate"] == 0
                && e["type"] == "user")),
        "{acls}"
    );

    // Operator mistakes are refused like PVE does.
    let r = api
        .call(
            "PUT",
            "/access/acl",
            &[
                ("path", "/"),
                ("tokens", "ops@pve!nope"),
                ("roles", "PVEAuditor"),
            ],
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(r.reason.contains("no such token"), "{}", r.reason);
    let r = api
        .call(
            "PUT",
            "/access/acl",
            &[("path", "/"), ("users", "ops@pve"), ("roles", "PVEMagic")],
        )
        .await;
    assert!(
        r.reason.contains("role 'PVEMagic' does not exist"),
        "{}",
        r.reason
    );
    let r = api
        .call("POST", "/access/users/ops@pve/token/tf", &[])
        .await;
    assert!(r.reason.contains("Token already exists"), "{}", r.reason);
    // Deleting the token removes it (and its ACL entries).
    api.ok("DELETE", "/access/users/ops@pve/token/tf", &[])
        .await;
    let r = api.call_with(Some(&tok), "GET", "/version", &[]).await;
    assert_eq!(r.status, 401);
    api.assert_no_violations();
}

#[tokio::test]
async fn users_made_through_the_api_log_in_and_read_their_permissions() {
    let api = start(fast().build()).await;
    api.ok(
        "POST",
        "/access/users",
        &[("userid", "ops@pve"), ("password", "long-enough-pw")],
    )
    .await;
    acl(&api, "/", "users", "ops@pve", "PVEAuditor", "1").await;
    let r = api.login("ops@pve", "wrong-password").await;
    assert_eq!(r.status, 401);
    let t = api.login("ops@pve", "long-enough-pw").await;
    assert_eq!(t.status, 200, "{}", t.body);
    let ticket = t.body["data"]["ticket"].as_str().expect("ticket");
    let r = api
        .http
        .get(api.url("/access/permissions?path=/vms/100"))
        .header("Cookie", format!("PVEAuthCookie={}", url_encode(ticket)))
        .send()
        .await
        .expect("send");
    let r = into_resp(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let privs = privs_at(&r.body["data"], "/vms/100");
    assert!(privs.contains(&"VM.Audit".to_string()), "{}", r.body);
    assert!(!privs.contains(&"VM.Allocate".to_string()), "{}", r.body);
    // A deleted user can no longer log in.
    api.ok("DELETE", "/access/users/ops@pve", &[]).await;
    let r = api.login("ops@pve", "long-enough-pw").await;
    assert_eq!(r.status, 401);
    api.assert_no_violations();
}
