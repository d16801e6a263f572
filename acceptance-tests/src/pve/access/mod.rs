//! Access control: users, API tokens (with privilege separation), roles and ACLs, and the
//! `/access/*` endpoints an operator uses to make a token (`pveum user add`,
//! `pveum user token add --privsep`, `pveum acl modify`, `pveum role add`), plus
//! `GET /access/permissions`.
//!
//! Semantics follow `PVE::AccessControl::roles` and `PVE::RPCEnvironment::permissions` of
//! pve-access-control (PVE 9): walking the path from `/` down, the subject's ACL entries at a
//! level (propagating ones, or any at the final path) replace what was inherited; `NoAccess`
//! wins; `root@pam` holds every privilege; a token with `privsep=0` has its user's
//! privileges, with `privsep=1` the intersection of its own and its user's (except for
//! tokens of `root@pam`, which are not intersected).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::auth::{TokenSpec, UserSpec, ALL_PRIVILEGES};
use super::state::now;

/// The built-in roles of PVE 9, derived the way `PVE::AccessControl::create_roles` does from
/// its `$privgroups` table (categories VM, Sys, Datastore, SDN, User, Pool, Mapping with
/// root/admin/user/audit groups): `PVE<Cat>Admin` = admin+user+audit, `PVE<Cat>User` =
/// user+audit (only when the user group is not empty), `PVEAuditor` = every audit group,
/// `PVEAdmin` = every admin+user+audit group without `Mapping.Modify`, `PVETemplateUser`,
/// `NoAccess` and `Administrator` (all privileges).
struct PrivGroup {
    cat: &'static str,
    admin: &'static [&'static str],
    user: &'static [&'static str],
    audit: &'static [&'static str],
}

const PRIV_GROUPS: &[PrivGroup] = &[
    PrivGroup {
        cat: "VM",
        admin: &[
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.GuestAgent.Unrestricted",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
        ],
        user: &[
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
            "VM.PowerMgmt",
        ],
        audit: &["VM.Audit", "VM.GuestAgent.Audit"],
    },
    // Sys root-only: Sys.PowerMgmt, Sys.Modify, Sys.Incoming, Sys.AccessNetwork.
    PrivGroup {
        cat: "Sys",
        admin: &["Sys.Console", "Sys.Syslog"],
        user: &[],
        audit: &["Sys.Audit"],
    },
    PrivGroup {
        cat: "Datastore",
        admin: &["Datastore.Allocate", "Datastore.AllocateTemplate"],
        user: &["Datastore.AllocateSpace"],
        audit: &["Datastore.Audit"],
    },
    PrivGroup {
        cat: "SDN",
        admin: &["SDN.Allocate", "SDN.Audit"],
        user: &["SDN.Use"],
        audit: &["SDN.Audit"],
    },
    // User root-only: Realm.Allocate.
    PrivGroup {
        cat: "User",
        admin: &["User.Modify", "Group.Allocate", "Realm.AllocateUser"],
        user: &[],
        audit: &[],
    },
    PrivGroup {
        cat: "Pool",
        admin: &["Pool.Allocate"],
        user: &["Pool.Audit"],
        audit: &["Pool.Audit"],
    },
    PrivGroup {
        cat: "Mapping",
        admin: &["Mapping.Modify"],
        user: &["Mapping.Use"],
        audit: &["Mapping.Audit"],
    },
];

#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub privs: BTreeSet<String>,
    pub special: bool,
}

/// Built-in roles by id.
pub(crate) fn builtin_roles() -> BTreeMap<String, Role> {
    let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |role: String, privs: &[&str]| {
        roles
            .entry(role)
            .or_default()
            .extend(privs.iter().map(|p| p.to_string()));
    };
    for g in PRIV_GROUPS {
        for part in [g.admin, g.user, g.audit] {
            add(format!("PVE{}Admin", g.cat), part);
            add("PVEAdmin".into(), part);
        }
        if !g.user.is_empty() {
            add(format!("PVE{}User", g.cat), g.user);
            add(format!("PVE{}User", g.cat), g.audit);
        }
        add("PVEAuditor".into(), g.audit);
    }
    add("PVETemplateUser".into(), &["VM.Clone", "VM.Audit"]);
    add("NoAccess".into(), &[]);
    add("Administrator".into(), ALL_PRIVILEGES);
    if let Some(a) = roles.get_mut("PVEAdmin") {
        a.remove("Mapping.Modify");
    }
    roles
        .into_iter()
        .map(|(k, privs)| {
            (
                k,
                Role {
                    privs,
                    special: true,
                },
            )
        })
        .collect()
}

/// An API token of a user.
#[derive(Clone)]
pub(crate) struct Token {
    pub secret: String,
    pub privsep: bool,
    pub expire: u64,
    pub comment: Option<String>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"<redacted>")
            .field("privsep", &self.privsep)
            .field("expire", &self.expire)
            .finish()
    }
}

#[derive(Clone, Default)]
pub(crate) struct User {
    pub enable: bool,
    pub expire: u64,
    pub password: Option<String>,
    pub info: Map<String, Value>,
    pub tokens: BTreeMap<String, Token>,
}

/// Who an ACL entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UgKind {
    User,
    Token,
}

impl UgKind {
    fn as_str(self) -> &'static str {
        match self {
            UgKind::User => "user",
            UgKind::Token => "token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclEntry {
    pub path: String,
    pub kind: UgKind,
    pub ugid: String,
    pub role: String,
    pub propagate: bool,
}

/// Users, tokens, roles and ACLs (`user.cfg`).
#[derive(Clone, Default)]
pub(crate) struct AccessState {
    pub users: BTreeMap<String, User>,
    pub roles: BTreeMap<String, Role>,
    pub acl: Vec<AclEntry>,
}

impl AccessState {
    /// The configured users and tokens. A spec's ACL (path -> privileges) becomes a custom
    /// role per distinct privilege set (`Administrator` for all of them) assigned with
    /// propagation; tokens get privilege separation, and a non-root user gets the same ACL so
    /// the token keeps exactly the configured privileges.
    pub fn from_config(tokens: &[TokenSpec], users: &[UserSpec]) -> Self {
        let mut s = AccessState {
            roles: builtin_roles(),
            ..Default::default()
        };
        s.ensure_user("root@pam");
        for u in users {
            s.ensure_user(&u.userid).password = Some(u.password.clone());
            for (path, privs) in &u.acl {
                let role = s.role_for(privs);
                s.grant(path, UgKind::User, &u.userid, &role, true);
            }
        }
        for t in tokens {
            s.ensure_user(&t.userid).tokens.insert(
                t.tokenid.clone(),
                Token {
                    secret: t.secret.clone(),
                    privsep: true,
                    expire: 0,
                    comment: None,
                },
            );
            for (path, privs) in &t.acl {
                let role = s.role_for(privs);
                s.grant(path, UgKind::Token, &t.full_id(), &role, true);
                if t.userid != "root@pam" {
                    s.grant(path, UgKind::User, &t.userid, &role, true);
                }
            }
        }
        s
    }

    fn ensure_user(&mut self, userid: &str) -> &mut User {
        self.users
            .entry(userid.to_string())
            .or_insert_with(|| User {
                enable: true,
                ..Default::default()
            })
    }

    fn role_for(&mut self, privs: &BTreeSet<String>) -> String {
        if let Some((id, _)) = self.roles.iter().find(|(_, r)| &r.privs == privs) {
            return id.clone();
        }
        let id = format!("WaddleConfigured{}", self.roles.len());
        self.roles.insert(
            id.clone(),
            Role {
                privs: privs.clone(),
                special: false,
            },
        );
        id
    }

    fn grant(&mut self, path: &str, kind: UgKind, ugid: &str, role: &str, propagate: bool) {
        let path = normalize_path(path).unwrap_or_else(|| path.to_string());
        self.acl
            .retain(|e| !(e.path == path && e.kind == kind && e.ugid == ugid && e.role == role));
        self.acl.push(AclEntry {
            path,
            kind,
            ugid: ugid.to_string(),
            role: role.to_string(),
            propagate,
        });
    }

    /// The authenticated id of a token, if the secret matches and token and user are valid.
    pub fn token_auth(&self, full_id: &str, secret: &str) -> Option<String> {
        let (userid, tokenid) = full_id.split_once('!')?;
        let u = self.users.get(userid).filter(|u| user_valid(u))?;
        let t = u.tokens.get(tokenid)?;
        let expired = t.expire != 0 && t.expire < now();
        (t.secret == secret && !expired).then(|| full_id.to_string())
    }

    /// Password check for ticket logins.
    pub fn password_ok(&self, userid: &str, password: &str) -> bool {
        self.users
            .get(userid)
            .filter(|u| user_valid(u))
            .and_then(|u| u.password.as_deref())
            == Some(password)
    }

    /// Is this user (not token) present and enabled?
    pub fn user_active(&self, userid: &str) -> bool {
        self.users.get(userid).is_some_and(user_valid)
    }

    /// Roles of a user or token on `path` (role -> propagate), as `PVE::AccessControl::roles`.
    fn roles_of(&self, kind: UgKind, ugid: &str, path: &str) -> BTreeMap<String, bool> {
        let mut roles = BTreeMap::new();
        for (level, is_final) in path_levels(path) {
            let new: BTreeMap<String, bool> = self
                .acl
                .iter()
                .filter(|e| e.kind == kind && e.ugid == ugid && e.path == level)
                .filter(|e| is_final || e.propagate)
                .map(|e| (e.role.clone(), e.propagate))
                .collect();
            if !new.is_empty() {
                roles = new;
            }
        }
        if let Some(p) = roles.get("NoAccess").copied() {
            return [("NoAccess".to_string(), p)].into();
        }
        roles
    }

    fn privs_of_roles(&self, roles: &BTreeMap<String, bool>) -> BTreeMap<String, bool> {
        let mut privs: BTreeMap<String, bool> = BTreeMap::new();
        for (role, propagate) in roles {
            if let Some(r) = self.roles.get(role) {
                for p in &r.privs {
                    let e = privs.entry(p.clone()).or_insert(false);
                    *e = *e || *propagate;
                }
            }
        }
        privs
    }

    /// Effective privileges of a user or token id on `path` (privilege -> propagate).
    pub fn permissions(&self, authid: &str, path: &str) -> BTreeMap<String, bool> {
        if authid == "root@pam" {
            return ALL_PRIVILEGES
                .iter()
                .map(|p| (p.to_string(), true))
                .collect();
        }
        if let Some((userid, tokenid)) = authid.split_once('!') {
            let Some(t) = self.users.get(userid).and_then(|u| u.tokens.get(tokenid)) else {
                return BTreeMap::new();
            };
            let user_privs = self.permissions(userid, path);
            if !t.privsep {
                return user_privs;
            }
            let own = self.privs_of_roles(&self.roles_of(UgKind::Token, authid, path));
            if userid == "root@pam" {
                return own;
            }
            return own
                .into_iter()
                .filter_map(|(p, prop)| user_privs.get(&p).map(|up| (p, prop && *up)))
                .collect();
        }
        if !self.user_active(authid) {
            return BTreeMap::new();
        }
        self.privs_of_roles(&self.roles_of(UgKind::User, authid, path))
    }

    /// `GET /access/permissions` without `path`: default top-level paths plus every ACL path,
    /// leaving out those without privileges.
    fn effective_permissions(&self, authid: &str) -> Map<String, Value> {
        let mut paths: BTreeSet<String> = [
            "/",
            "/access",
            "/access/groups",
            "/nodes",
            "/pool",
            "/sdn",
            "/storage",
            "/vms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        paths.extend(self.acl.iter().map(|e| e.path.clone()));
        paths
            .into_iter()
            .filter_map(|p| {
                let privs = self.permissions(authid, &p);
                (!privs.is_empty()).then(|| (p, privs_json(&privs)))
            })
            .collect()
    }
}

/// A user, or a 500 with `missing`.
fn find_user<'a>(
    access: &'a AccessState,
    userid: &str,
    missing: &str,
) -> Result<&'a User, super::server::ApiError> {
    access
        .users
        .get(userid)
        .ok_or_else(|| super::server::ApiError::die(missing))
}

/// A fresh random API token value in PVE's UUID form.
pub fn random_token_value() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    let h = hex::encode(buf);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn user_valid(u: &User) -> bool {
    u.enable && (u.expire == 0 || u.expire >= now())
}

fn privs_json(privs: &BTreeMap<String, bool>) -> Value {
    Value::Object(
        privs
            .iter()
            .map(|(k, v)| (k.clone(), json!(i64::from(*v))))
            .collect(),
    )
}

/// `/`, `/vms`, `/vms/100` for `/vms/100`, each with "is the final path".
fn path_levels(path: &str) -> Vec<(String, bool)> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = vec![("/".to_string(), parts.is_empty())];
    let mut cur = String::new();
    for (i, p) in parts.iter().enumerate() {
        cur.push('/');
        cur.push_str(p);
        out.push((cur.clone(), i + 1 == parts.len()));
    }
    out
}

/// `PVE::AccessControl::normalize_path`.
pub(crate) fn normalize_path(path: &str) -> Option<String> {
    let mut p = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        p.push('/');
        p.push_str(seg);
    }
    if p.is_empty() {
        p.push('/');
    }
    p.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
        .then_some(p)
}

/// `PVE::AccessControl::check_path`: the ACL paths PVE accepts.
fn valid_acl_path(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let vmid_ok = |s: &str| s.len() >= 3 && !s.starts_with('0') && s.parse::<u32>().is_ok();
    match segs.as_slice() {
        [] => true,
        ["access"] | ["access", "groups" | "realm"] => true,
        ["access", "groups" | "realm", _] => true,
        ["nodes" | "pool" | "storage" | "mapping" | "sdn" | "vms"] => true,
        ["nodes" | "pool" | "storage", _] => true,
        ["pool", _, _] => true,
        ["mapping", "dir" | "notifications" | "pci" | "usb"] => true,
        ["mapping", "dir" | "notifications" | "pci" | "usb", _] => true,
        ["sdn", "zones" | "vnets"] => true,
        ["sdn", "zones" | "vnets", _] => true,
        ["sdn", "zones", _, _] | ["sdn", "zones", _, _, _] => true,
        ["vms", id] => vmid_ok(id),
        _ => false,
    }
}

fn split_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("")
        .split([',', ';', ' ', '\0'])
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

mod endpoints;
pub(crate) use endpoints::dispatch;

#[cfg(test)]
mod tests {
    use super::*;

    fn with_entries(entries: &[(&str, UgKind, &str, &str, bool)]) -> AccessState {
        let mut s = AccessState::from_config(&[], &[]);
        for (path, kind, ugid, role, prop) in entries {
            let userid = ugid.split('!').next().unwrap_or("");
            let u = s.ensure_user(userid);
            if let Some((_, t)) = ugid.split_once('!') {
                u.tokens.insert(
                    t.to_string(),
                    Token {
                        secret: "s".into(),
                        privsep: true,
                        expire: 0,
                        comment: None,
                    },
                );
            }
            s.grant(path, *kind, ugid, role, *prop);
        }
        s
    }

    #[test]
    fn builtin_roles_match_pve9() {
        let r = builtin_roles();
        let has = |role: &str, p: &str| r[role].privs.contains(p);
        assert!(has("PVEVMUser", "VM.GuestAgent.FileWrite"));
        assert!(has("PVEVMUser", "VM.GuestAgent.Audit"));
        assert!(!has("PVEVMUser", "VM.GuestAgent.Unrestricted"));
        assert!(has("PVEVMAdmin", "VM.GuestAgent.Unrestricted"));
        assert!(!has("PVEVMAdmin", "Datastore.AllocateSpace"));
        assert!(has("PVESDNUser", "SDN.Use"));
        assert!(!has("PVESDNUser", "SDN.Allocate"));
        assert!(!has("PVEAdmin", "Sys.Modify"));
        assert!(!has("PVEAdmin", "Mapping.Modify"));
        assert!(!has("PVEAdmin", "Permissions.Modify"));
        assert!(has("PVEAdmin", "SDN.Allocate"));
        assert!(has("PVEAuditor", "Pool.Audit"));
        assert!(!r.contains_key("PVESysUser"));
        assert!(r["NoAccess"].privs.is_empty());
        assert_eq!(r["Administrator"].privs.len(), ALL_PRIVILEGES.len());
        // The 17 predefined roles of the PVE 9 admin guide ("Roles").
        let ids: Vec<&str> = r.keys().map(String::as_str).collect();
        assert_eq!(
            ids,
            [
                "Administrator",
                "NoAccess",
                "PVEAdmin",
                "PVEAuditor",
                "PVEDatastoreAdmin",
                "PVEDatastoreUser",
                "PVEMappingAdmin",
                "PVEMappingUser",
                "PVEPoolAdmin",
                "PVEPoolUser",
                "PVESDNAdmin",
                "PVESDNUser",
                "PVESysAdmin",
                "PVETemplateUser",
                "PVEUserAdmin",
                "PVEVMAdmin",
                "PVEVMUser"
            ]
        );
    }

    #[test]
    fn propagation_override_and_privsep() {
        let s = with_entries(&[
            ("/", UgKind::User, "u@pve", "PVEAdmin", true),
            ("/vms/100", UgKind::User, "u@pve", "PVEVMUser", true),
            ("/storage", UgKind::User, "u@pve", "PVEDatastoreUser", false),
            ("/", UgKind::Token, "u@pve!t", "PVEVMAdmin", true),
            ("/sdn", UgKind::User, "u@pve", "NoAccess", true),
        ]);
        let p = |id: &str, path: &str| s.permissions(id, path);
        // deeper entries replace inherited roles
        assert!(p("u@pve", "/vms/100").contains_key("VM.PowerMgmt"));
        assert!(!p("u@pve", "/vms/100").contains_key("VM.Allocate"));
        assert!(p("u@pve", "/vms/101").contains_key("VM.Allocate"));
        // propagate=0 only at the exact path
        assert_eq!(
            p("u@pve", "/storage").get("Datastore.AllocateSpace"),
            Some(&false)
        );
        assert!(p("u@pve", "/storage/local").contains_key("Datastore.Allocate"));
        assert!(p("u@pve", "/sdn/zones/z").is_empty());
        // privsep: token ∩ user
        assert!(p("u@pve!t", "/vms/101").contains_key("VM.Allocate"));
        assert!(!p("u@pve!t", "/vms/100").contains_key("VM.Allocate"));
        assert!(!p("u@pve!t", "/storage/local").contains_key("Datastore.Allocate"));
        assert!(p("root@pam", "/anything").contains_key("Sys.Modify"));
        assert!(p("nobody@pve", "/").is_empty());
    }

    #[test]
    fn acl_paths() {
        for ok in [
            "/",
            "/vms/100",
            "/sdn/zones/localnetwork/vmbr0",
            "/storage/local",
            "/nodes/pve",
        ] {
            assert!(valid_acl_path(ok), "{ok}");
        }
        for bad in ["/vms/99", "/foo", "/vms/100/x"] {
            assert!(!valid_acl_path(bad), "{bad}");
        }
        assert_eq!(normalize_path("//vms//100/").as_deref(), Some("/vms/100"));
    }
}
