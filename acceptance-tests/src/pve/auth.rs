//! Authentication (API tokens, tickets + CSRF) and privilege checks.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use serde_json::Value;

use super::access::AccessState;

/// Every PVE 9 privilege.
pub const ALL_PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// ACL entries: path -> privileges (propagating to sub-paths).
pub type Acl = Vec<(String, BTreeSet<String>)>;

fn acl_from(entries: &[(&str, &[&str])]) -> Acl {
    entries
        .iter()
        .map(|(p, privs)| (p.to_string(), privs.iter().map(|s| s.to_string()).collect()))
        .collect()
}

/// An API token.
#[derive(Clone)]
pub struct TokenSpec {
    /// `root@pam`
    pub userid: String,
    /// `waddle`
    pub tokenid: String,
    pub secret: String,
    pub acl: Acl,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("userid", &self.userid)
            .field("tokenid", &self.tokenid)
            .field("secret", &"<redacted>")
            .field("acl", &self.acl)
            .finish()
    }
}

impl TokenSpec {
    /// A token with every privilege on `/`.
    pub fn full(userid: &str, tokenid: &str, secret: &str) -> Self {
        Self::with_privileges(userid, tokenid, secret, &[("/", ALL_PRIVILEGES)])
    }
    /// A token with the given ACL (path, privileges), privileges propagate down.
    pub fn with_privileges(
        userid: &str,
        tokenid: &str,
        secret: &str,
        acl: &[(&str, &[&str])],
    ) -> Self {
        Self {
            userid: userid.into(),
            tokenid: tokenid.into(),
            secret: secret.into(),
            acl: acl_from(acl),
        }
    }
    /// `USER@REALM!TOKENID`
    pub fn full_id(&self) -> String {
        format!("{}!{}", self.userid, self.tokenid)
    }
    /// `USER@REALM!TOKENID=SECRET` (what goes after `PVEAPIToken=`).
    pub fn header_value(&self) -> String {
        format!("{}={}", self.full_id(), self.secret)
    }
}

/// A user with a password (ticket auth).
#[derive(Clone)]
pub struct UserSpec {
    pub userid: String,
    pub password: String,
    pub acl: Acl,
}

impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("userid", &self.userid)
            .field("password", &"<redacted>")
            .field("acl", &self.acl)
            .finish()
    }
}

impl UserSpec {
    pub fn full(userid: &str, password: &str) -> Self {
        Self::with_privileges(userid, password, &[("/", ALL_PRIVILEGES)])
    }
    pub fn with_privileges(userid: &str, password: &str, acl: &[(&str, &[&str])]) -> Self {
        Self {
            userid: userid.into(),
            password: password.into(),
            acl: acl_from(acl),
        }
    }
}

/// Who is calling, with the access configuration as it was when the request arrived.
#[derive(Clone)]
pub(crate) struct Caller {
    /// `root@pam` or `root@pam!waddle` (empty for unauthenticated `world` endpoints)
    pub id: String,
    pub access: Arc<AccessState>,
    pub is_ticket: bool,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("id", &self.id)
            .field("is_ticket", &self.is_ticket)
            .finish()
    }
}

impl Caller {
    /// Nobody (for `world` endpoints).
    pub fn anonymous() -> Self {
        Self {
            id: String::new(),
            access: Arc::new(AccessState::default()),
            is_ticket: false,
        }
    }
    /// Does the caller hold `privilege` on `path` (effective privileges: ACL propagation,
    /// role overrides, token privilege separation)?
    pub fn has(&self, path: &str, privilege: &str) -> bool {
        self.access
            .permissions(&self.id, path)
            .contains_key(privilege)
    }
}

/// Substitute `{name}` in a permission path with parameters.
pub(crate) fn subst(path: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        if let Some(end) = rest[start..].find('}') {
            let name = &rest[start + 1..start + end];
            out.push_str(params.get(name).map(String::as_str).unwrap_or(""));
            rest = &rest[start + end + 1..];
        } else {
            out.push_str(&rest[start..]);
            rest = "";
        }
    }
    out.push_str(rest);
    out
}

/// Evaluate a schema `permissions.check` expression. `Err((path, privs))` names what failed.
pub(crate) fn eval_check(
    check: &Value,
    caller: &Caller,
    params: &BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    let arr = match check.as_array() {
        Some(a) if !a.is_empty() => a,
        _ => return Ok(()),
    };
    match arr[0].as_str() {
        Some("perm") => {
            let path = subst(arr.get(1).and_then(Value::as_str).unwrap_or("/"), params);
            let privs: Vec<&str> = arr
                .get(2)
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let any = arr
                .iter()
                .skip(3)
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0].as_str() == Some("any") && w[1].as_i64().unwrap_or(0) != 0);
            let ok = if any {
                privs.iter().any(|p| caller.has(&path, p))
            } else {
                privs.iter().all(|p| caller.has(&path, p))
            };
            if ok {
                Ok(())
            } else {
                Err((path, privs.join("|")))
            }
        }
        Some("and") => {
            for sub in &arr[1..] {
                eval_check(sub, caller, params)?;
            }
            Ok(())
        }
        Some("or") => {
            let mut last = Err(("/".to_string(), String::new()));
            for sub in &arr[1..] {
                match eval_check(sub, caller, params) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = Err(e),
                }
            }
            last
        }
        // `self`: the user named by `userid` is the caller; a privilege: on the realm of
        // `userid` (`/access/realm/<realm>`).
        Some("userid-param") => {
            let userid = params.get("userid").map(String::as_str).unwrap_or("");
            match arr.get(1).and_then(Value::as_str) {
                Some("self") if !caller.id.is_empty() && caller.id == userid => Ok(()),
                Some("self") => Err(("/access".into(), "self".into())),
                Some(privilege) => {
                    let realm = userid.rsplit_once('@').map(|(_, r)| r).unwrap_or("");
                    let path = format!("/access/realm/{realm}");
                    if caller.has(&path, privilege) {
                        Ok(())
                    } else {
                        Err((path, privilege.to_string()))
                    }
                }
                None => Ok(()),
            }
        }
        // Privileges on `/access/groups` (no groups exist in the emulator).
        Some("userid-group") => {
            let privs: Vec<&str> = arr
                .get(1)
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if privs.iter().any(|p| caller.has("/access/groups", p)) {
                Ok(())
            } else {
                Err(("/access/groups".into(), privs.join("|")))
            }
        }
        // `PVE::RPCEnvironment::check_perm_modify`.
        Some("perm-modify") => {
            let path = subst(arr.get(1).and_then(Value::as_str).unwrap_or("/"), params);
            let mut privs = vec!["Permissions.Modify"];
            if path.starts_with("/storage/") {
                privs.push("Datastore.Allocate");
            } else if path.starts_with("/vms/") {
                privs.push("VM.Allocate");
            } else if path.starts_with("/pool/") {
                privs.push("Pool.Allocate");
            }
            if privs.iter().any(|p| caller.has(&path, p)) {
                Ok(())
            } else {
                Err((path, privs.join("|")))
            }
        }
        _ => Ok(()),
    }
}

/// A PVE-style ticket: `PVE:USER:HEXTIME::SIGNATURE`.
pub(crate) fn make_ticket(secret: &str, userid: &str, now: u64) -> String {
    let data = format!("PVE:{userid}:{now:08X}");
    format!("{data}::{}", sign(secret, &data))
}

pub(crate) fn make_csrf(secret: &str, userid: &str, now: u64) -> String {
    let data = format!("{now:08X}:{userid}");
    format!("{now:08X}:{}", sign(secret, &data))
}

fn sign(secret: &str, data: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(secret.as_bytes());
    h.update(b"\0");
    h.update(data.as_bytes());
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(h.finalize())
}

/// Verify a ticket; returns the user id.
pub(crate) fn verify_ticket(secret: &str, ticket: &str, now: u64, lifetime: u64) -> Option<String> {
    let (data, sig) = ticket.split_once("::")?;
    if sign(secret, data) != sig {
        return None;
    }
    let mut parts = data.split(':');
    if parts.next()? != "PVE" {
        return None;
    }
    let user = parts.next()?;
    let t = u64::from_str_radix(parts.next()?, 16).ok()?;
    if now > t + lifetime {
        return None;
    }
    Some(user.to_string())
}

pub(crate) fn verify_csrf(secret: &str, token: &str, userid: &str) -> bool {
    let Some((time, sig)) = token.split_once(':') else {
        return false;
    };
    sign(secret, &format!("{time}:{userid}")) == sig
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_propagation_and_checks() {
        let token = TokenSpec::with_privileges(
            "u@pve",
            "t",
            "s",
            &[
                ("/vms/105", &["VM.Audit"]),
                ("/storage", &["Datastore.Audit"]),
            ],
        );
        let c = Caller {
            id: "u@pve!t".into(),
            access: Arc::new(AccessState::from_config(&[token], &[])),
            is_ticket: false,
        };
        assert!(c.has("/vms/105", "VM.Audit"));
        assert!(!c.has("/vms/1050", "VM.Audit"));
        assert!(c.has("/storage/local", "Datastore.Audit"));
        let params: BTreeMap<String, String> = [("vmid".to_string(), "105".to_string())].into();
        let check: Value = serde_json::json!(["perm", "/vms/{vmid}", ["VM.Audit"]]);
        assert!(eval_check(&check, &c, &params).is_ok());
        let check: Value = serde_json::json!([
            "perm",
            "/vms/{vmid}",
            ["VM.GuestAgent.Audit", "VM.GuestAgent.Unrestricted"],
            "any",
            1
        ]);
        assert_eq!(
            eval_check(&check, &c, &params),
            Err((
                "/vms/105".into(),
                "VM.GuestAgent.Audit|VM.GuestAgent.Unrestricted".into()
            ))
        );
    }

    #[test]
    fn tickets_roundtrip() {
        let t = make_ticket("s", "root@pam", 1000);
        assert_eq!(
            verify_ticket("s", &t, 1001, 7200).as_deref(),
            Some("root@pam")
        );
        assert!(verify_ticket("x", &t, 1001, 7200).is_none());
        assert!(verify_ticket("s", &t, 100_000, 7200).is_none());
        let c = make_csrf("s", "root@pam", 1000);
        assert!(verify_csrf("s", &c, "root@pam"));
        assert!(!verify_csrf("s", &c, "other@pam"));
    }
}
