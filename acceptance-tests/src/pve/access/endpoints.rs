//! The `/access/*` endpoints (users, tokens, roles, ACLs, permissions).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{
    find_user, normalize_path, privs_json, random_token_value, split_list, valid_acl_path, Role,
    Token, UgKind, User,
};
use crate::pve::auth::ALL_PRIVILEGES;
use crate::pve::server::{ApiError, Ctx};

type R = Result<Value, ApiError>;

/// Every `/access/*` endpoint except the ticket.
pub(crate) fn dispatch(ctx: &mut Ctx) -> R {
    let (m, t) = (ctx.method.clone(), ctx.template.clone());
    match (m.as_str(), t.as_str()) {
        ("GET", "/access") => Ok(json!([
            {"subdir": "users"}, {"subdir": "roles"}, {"subdir": "acl"},
            {"subdir": "permissions"}, {"subdir": "ticket"}
        ])),
        ("GET", "/access/permissions") => permissions(ctx),
        ("GET", "/access/users") => users_list(ctx),
        ("POST", "/access/users") => user_create(ctx),
        ("GET", "/access/users/{userid}") => user_get(ctx),
        ("DELETE", "/access/users/{userid}") => user_delete(ctx),
        ("GET", "/access/users/{userid}/token") => tokens_list(ctx),
        ("GET", "/access/users/{userid}/token/{tokenid}") => token_get(ctx),
        ("POST", "/access/users/{userid}/token/{tokenid}") => token_create(ctx),
        ("DELETE", "/access/users/{userid}/token/{tokenid}") => token_delete(ctx),
        ("GET", "/access/roles") => roles_list(ctx),
        ("POST", "/access/roles") => role_create(ctx),
        ("GET", "/access/roles/{roleid}") => role_get(ctx),
        ("GET", "/access/acl") => acl_list(ctx),
        ("PUT", "/access/acl") => acl_update(ctx),
        (m, p) => Err(ApiError::new(
            501,
            format!("Method '{m} {p}' not implemented by the emulator"),
        )),
    }
}

fn permissions(ctx: &Ctx) -> R {
    let authid = ctx.caller.id.clone();
    let target = ctx.p("userid").unwrap_or(&authid).to_string();
    let owner = target.split('!').next().unwrap_or("");
    if target != authid && owner != authid {
        ctx.require("/access", "Sys.Audit")?;
    }
    let st = ctx.shared.st();
    match ctx.p("path") {
        Some(path) => {
            let privs = st.access.permissions(&target, path);
            Ok(json!({ path: privs_json(&privs) }))
        }
        None => Ok(Value::Object(st.access.effective_permissions(&target))),
    }
}

fn user_json(userid: &str, u: &User, full: bool) -> Value {
    let mut o = u.info.clone();
    o.insert("userid".into(), userid.into());
    o.insert("enable".into(), json!(i64::from(u.enable)));
    o.insert("expire".into(), json!(u.expire));
    if full {
        let tokens: Vec<Value> = u
            .tokens
            .iter()
            .map(|(id, t)| token_json(Some(id), t))
            .collect();
        o.insert("tokens".into(), Value::Array(tokens));
    }
    Value::Object(o)
}

fn token_json(tokenid: Option<&str>, t: &Token) -> Value {
    let mut o = Map::new();
    if let Some(id) = tokenid {
        o.insert("tokenid".into(), id.into());
    }
    o.insert("privsep".into(), json!(i64::from(t.privsep)));
    o.insert("expire".into(), json!(t.expire));
    if let Some(c) = &t.comment {
        o.insert("comment".into(), c.clone().into());
    }
    Value::Object(o)
}

fn users_list(ctx: &Ctx) -> R {
    let full = ctx.flag("full").unwrap_or(false);
    let me = ctx.caller.id.split('!').next().unwrap_or("").to_string();
    let see_all = ctx.caller.has("/access/groups", "User.Modify")
        || ctx.caller.has("/access/groups", "Sys.Audit");
    let st = ctx.shared.st();
    let list = st
        .access
        .users
        .iter()
        .filter(|(id, _)| see_all || **id == me)
        .filter(|(_, u)| ctx.flag("enabled").is_none_or(|e| e == u.enable))
        .map(|(id, u)| user_json(id, u, full))
        .collect();
    Ok(Value::Array(list))
}

fn user_create(ctx: &Ctx) -> R {
    let userid = ctx.req("userid")?.to_string();
    let realm = userid.rsplit_once('@').map(|(_, r)| r).unwrap_or("");
    if !matches!(realm, "pam" | "pve") {
        return Err(ApiError::die(format!(
            "create user failed: domain '{realm}' does not exist"
        )));
    }
    if let Some(g) = split_list(ctx.p("groups")).first() {
        return Err(ApiError::die(format!(
            "create user failed: no such group '{g}'"
        )));
    }
    let mut st = ctx.shared.st();
    if st.access.users.contains_key(&userid) {
        return Err(ApiError::die(format!(
            "create user failed: user '{userid}' already exists"
        )));
    }
    let mut info = Map::new();
    for k in ["comment", "email", "firstname", "lastname"] {
        if let Some(v) = ctx.p(k) {
            info.insert(k.into(), v.into());
        }
    }
    let expire = ctx.p("expire").and_then(|e| e.parse().ok()).unwrap_or(0);
    st.access.users.insert(
        userid,
        User {
            enable: ctx.flag("enable").unwrap_or(true),
            expire,
            password: ctx.p("password").map(str::to_string),
            info,
            tokens: BTreeMap::new(),
        },
    );
    Ok(Value::Null)
}

fn user_get(ctx: &Ctx) -> R {
    let userid = ctx.req("userid")?;
    let st = ctx.shared.st();
    let u = find_user(
        &st.access,
        userid,
        &format!("user '{userid}' does not exist"),
    )?;
    let mut v = user_json(userid, u, false);
    if let Some(o) = v.as_object_mut() {
        o.remove("userid");
        let tokens: Map<String, Value> = u
            .tokens
            .iter()
            .map(|(id, t)| (id.clone(), token_json(None, t)))
            .collect();
        o.insert("tokens".into(), Value::Object(tokens));
    }
    Ok(v)
}

fn user_delete(ctx: &Ctx) -> R {
    let userid = ctx.req("userid")?.to_string();
    let mut st = ctx.shared.st();
    if st.access.users.remove(&userid).is_none() {
        return Err(ApiError::die(format!(
            "delete user failed: user '{userid}' does not exist"
        )));
    }
    let token_prefix = format!("{userid}!");
    st.access.acl.retain(|e| {
        !(e.kind == UgKind::User && e.ugid == userid
            || e.kind == UgKind::Token && e.ugid.starts_with(&token_prefix))
    });
    Ok(Value::Null)
}

fn tokens_list(ctx: &Ctx) -> R {
    let userid = ctx.req("userid")?;
    let st = ctx.shared.st();
    let u = find_user(&st.access, userid, &format!("no such user ('{userid}')"))?;
    Ok(Value::Array(
        u.tokens
            .iter()
            .map(|(id, t)| token_json(Some(id), t))
            .collect(),
    ))
}

fn token_get(ctx: &Ctx) -> R {
    let (userid, tokenid) = (ctx.req("userid")?, ctx.req("tokenid")?);
    let st = ctx.shared.st();
    st.access
        .users
        .get(userid)
        .and_then(|u| u.tokens.get(tokenid))
        .map(|t| token_json(None, t))
        .ok_or_else(|| ApiError::die(format!("no such token '{tokenid}' for user '{userid}'")))
}

fn token_create(ctx: &Ctx) -> R {
    let userid = ctx.req("userid")?.to_string();
    let tokenid = ctx.req("tokenid")?.to_string();
    let mut st = ctx.shared.st();
    let u = st
        .access
        .users
        .get_mut(&userid)
        .ok_or_else(|| ApiError::die(format!("no such user ('{userid}')")))?;
    if u.tokens.contains_key(&tokenid) {
        return Err(ApiError::die(format!(
            "Token already exists.\n(tokenid '{userid}!{tokenid}')"
        )));
    }
    let token = Token {
        secret: random_token_value(),
        privsep: ctx.flag("privsep").unwrap_or(true),
        expire: ctx
            .p("expire")
            .and_then(|e| e.parse().ok())
            .unwrap_or(u.expire),
        comment: ctx.p("comment").map(str::to_string),
    };
    let out = json!({
        "full-tokenid": format!("{userid}!{tokenid}"),
        "info": token_json(None, &token),
        "value": token.secret,
    });
    u.tokens.insert(tokenid, token);
    Ok(out)
}

fn token_delete(ctx: &Ctx) -> R {
    let userid = ctx.req("userid")?.to_string();
    let tokenid = ctx.req("tokenid")?.to_string();
    let mut st = ctx.shared.st();
    let removed = st
        .access
        .users
        .get_mut(&userid)
        .and_then(|u| u.tokens.remove(&tokenid));
    if removed.is_none() {
        return Err(ApiError::die(format!(
            "no such token '{tokenid}' for user '{userid}'"
        )));
    }
    let full = format!("{userid}!{tokenid}");
    st.access
        .acl
        .retain(|e| !(e.kind == UgKind::Token && e.ugid == full));
    Ok(Value::Null)
}

fn roles_list(ctx: &Ctx) -> R {
    let st = ctx.shared.st();
    Ok(Value::Array(
        st.access
            .roles
            .iter()
            .map(|(id, r)| {
                let privs: Vec<&str> = r.privs.iter().map(String::as_str).collect();
                json!({"roleid": id, "privs": privs.join(","), "special": i64::from(r.special)})
            })
            .collect(),
    ))
}

fn role_get(ctx: &Ctx) -> R {
    let roleid = ctx.req("roleid")?;
    let st = ctx.shared.st();
    let r = st
        .access
        .roles
        .get(roleid)
        .ok_or_else(|| ApiError::die(format!("role '{roleid}' does not exist")))?;
    Ok(Value::Object(
        r.privs.iter().map(|p| (p.clone(), json!(1))).collect(),
    ))
}

fn role_create(ctx: &Ctx) -> R {
    let roleid = ctx.req("roleid")?.to_string();
    let privs = split_list(ctx.p("privs"));
    if let Some(bad) = privs.iter().find(|p| !ALL_PRIVILEGES.contains(&p.as_str())) {
        return Err(ApiError::die(format!(
            "create role failed: invalid privilege '{bad}'"
        )));
    }
    let mut st = ctx.shared.st();
    if st.access.roles.contains_key(&roleid) {
        return Err(ApiError::die(format!(
            "create role failed: role '{roleid}' already exists"
        )));
    }
    st.access.roles.insert(
        roleid,
        Role {
            privs: privs.into_iter().collect(),
            special: false,
        },
    );
    Ok(Value::Null)
}

fn acl_list(ctx: &Ctx) -> R {
    let st = ctx.shared.st();
    let list = st
        .access
        .acl
        .iter()
        .filter(|e| {
            ctx.caller.has(&e.path, "Permissions.Modify") || ctx.caller.has(&e.path, "Sys.Audit")
        })
        .map(|e| {
            json!({
                "path": e.path, "type": e.kind.as_str(), "ugid": e.ugid,
                "roleid": e.role, "propagate": i64::from(e.propagate),
            })
        })
        .collect();
    Ok(Value::Array(list))
}

fn acl_update(ctx: &Ctx) -> R {
    let fail = |m: String| ApiError::die(format!("ACL update failed: {m}\n"));
    let users = split_list(ctx.p("users"));
    let tokens = split_list(ctx.p("tokens"));
    let groups = split_list(ctx.p("groups"));
    if users.is_empty() && tokens.is_empty() && groups.is_empty() {
        return Err(ApiError::die(
            "either 'users', 'groups' or 'tokens' is required, but none was specified",
        ));
    }
    let path = normalize_path(ctx.req("path")?)
        .filter(|p| valid_acl_path(p))
        .ok_or_else(|| {
            fail(format!(
                "invalid ACL path '{}'",
                ctx.p("path").unwrap_or("")
            ))
        })?;
    let propagate = ctx.flag("propagate").unwrap_or(true);
    let delete = ctx.flag("delete").unwrap_or(false);
    let mut st = ctx.shared.st();
    let mut subjects = Vec::new();
    if let Some(g) = groups.first() {
        return Err(fail(format!("group '{g}' does not exist")));
    }
    for u in users {
        if !st.access.users.contains_key(&u) {
            return Err(fail(format!("user '{u}' does not exist")));
        }
        subjects.push((UgKind::User, u));
    }
    for t in tokens {
        let exists = t.split_once('!').is_some_and(|(u, id)| {
            st.access
                .users
                .get(u)
                .is_some_and(|u| u.tokens.contains_key(id))
        });
        if !exists {
            return Err(fail(format!("no such token '{t}'")));
        }
        subjects.push((UgKind::Token, t));
    }
    for role in split_list(ctx.p("roles")) {
        if !st.access.roles.contains_key(&role) {
            return Err(fail(format!("role '{role}' does not exist")));
        }
        for (kind, ugid) in &subjects {
            if delete {
                st.access.acl.retain(|e| {
                    !(e.path == path && e.kind == *kind && &e.ugid == ugid && e.role == role)
                });
            } else {
                st.access.grant(&path, *kind, ugid, &role, propagate);
            }
        }
    }
    Ok(Value::Null)
}
