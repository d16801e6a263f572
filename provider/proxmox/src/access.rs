//! Access control reads: the caller's own effective privileges.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{Client, Error, Params, Result};

/// Effective privileges by ACL path, as `GET /access/permissions` returns them (the
/// propagate flag of each privilege is kept).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(pub BTreeMap<String, BTreeMap<String, bool>>);

impl Permissions {
    /// Parse the `data` of `GET /access/permissions` (`{path: {privilege: 0|1}}`).
    pub fn from_value(path: &str, v: &Value) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::decode(path, format!("not an object: {v}")))?;
        let mut out = BTreeMap::new();
        for (p, privs) in obj {
            let privs = privs
                .as_object()
                .ok_or_else(|| Error::decode(path, format!("{p}: not an object")))?;
            let map = privs
                .iter()
                .map(|(k, f)| {
                    let propagate = match f {
                        Value::Bool(b) => *b,
                        Value::Number(n) => n.as_i64() != Some(0),
                        Value::String(s) => s != "0",
                        _ => false,
                    };
                    (k.clone(), propagate)
                })
                .collect();
            out.insert(p.clone(), map);
        }
        Ok(Self(out))
    }

    /// The privileges held on exactly `path` (PVE has applied propagation already).
    pub fn at(&self, path: &str) -> BTreeSet<String> {
        self.0
            .get(path)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Client {
    /// `GET /access/permissions`: the caller's own effective privileges (a token's with its
    /// privilege separation applied), on `path` only or on the whole ACL tree.
    pub async fn permissions(&self, path: Option<&str>) -> Result<Permissions> {
        let mut params = Params::new();
        if let Some(p) = path {
            params = params.str("path", p);
        }
        let v: Value = self.get("/access/permissions", &params).await?;
        Permissions::from_value("/access/permissions", &v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pve_permission_maps() {
        let v = serde_json::json!({"/vms/100": {"VM.Audit": 1, "VM.Allocate": 0}, "/": {}});
        let p = Permissions::from_value("/access/permissions", &v).unwrap();
        assert_eq!(
            p.at("/vms/100").into_iter().collect::<Vec<_>>(),
            ["VM.Allocate", "VM.Audit"]
        );
        assert!(!p.0["/vms/100"]["VM.Allocate"], "not propagated");
        assert!(p.at("/").is_empty());
        assert!(p.at("/storage").is_empty());
        assert!(Permissions::from_value("/x", &serde_json::json!([1])).is_err());
        assert!(Permissions::from_value("/x", &serde_json::json!({"/": 3})).is_err());
    }
}
