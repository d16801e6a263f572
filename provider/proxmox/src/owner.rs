//! Ownership marks: what makes a VM "ours".
//!
//! Every VM waddle creates carries the tag [`OWNER_TAG`] and a line
//! `waddle-owner: <resource type>/<scope>/<name>` in its description. A VM is adopted only
//! when it carries the caller's mark, and [`Client::shutdown_and_delete_vm`] deletes only such
//! VMs. A VM without any mark is accepted only where the caller names it explicitly (an
//! imported or previously recorded VM, matched by name), so a foreign VM that happens to have
//! "our" VMID is never touched.

use std::fmt;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::vm::{ClusterVm, VmConfig, VmSpec};

/// The tag every VM created by waddle carries.
pub const OWNER_TAG: &str = "waddle";

const LINE_PREFIX: &str = "waddle-owner:";

/// The owner of a VM: `<resource type>/<scope>/<name>`, e.g.
/// `waddle_talos_cluster/prod/cp-1` or `waddle_sni_proxy/sni-proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnerMark(String);

/// How a VM relates to an [`OwnerMark`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// The VM carries this mark.
    Ours,
    /// The VM carries no waddle mark at all.
    Unmarked,
    /// The VM carries another owner's mark.
    Foreign(String),
}

impl OwnerMark {
    /// A mark from its parts, joined by `/` (line breaks are replaced by spaces).
    pub fn new(parts: &[&str]) -> Self {
        OwnerMark(
            parts
                .iter()
                .map(|p| p.replace(['\n', '\r'], " ").trim().to_string())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// The mark's text (without the `waddle-owner:` prefix).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The description line carrying the mark.
    pub fn line(&self) -> String {
        format!("{LINE_PREFIX} {}", self.0)
    }

    /// `text` followed by the mark's line.
    pub fn describe(&self, text: &str) -> String {
        if text.is_empty() {
            self.line()
        } else {
            format!("{}\n{}", text.trim_end(), self.line())
        }
    }

    /// Put the mark on a VM spec: the owner tag and the description line.
    pub fn apply(&self, spec: &mut VmSpec) {
        if !spec.tags.iter().any(|t| t == OWNER_TAG) {
            spec.tags.insert(0, OWNER_TAG.to_string());
        }
        let text = spec.description.clone().unwrap_or_default();
        spec.description = Some(self.describe(&without_mark(&text)));
    }

    /// The mark found in a VM description, if any.
    pub fn in_description(description: &str) -> Option<OwnerMark> {
        description.lines().find_map(|l| {
            l.trim()
                .strip_prefix(LINE_PREFIX)
                .map(|m| OwnerMark(m.trim().to_string()))
        })
    }

    /// How a VM with this config relates to the mark.
    pub fn ownership(&self, cfg: &VmConfig) -> Ownership {
        match cfg
            .get_str("description")
            .and_then(|d| OwnerMark::in_description(&d))
        {
            Some(m) if m == *self => Ownership::Ours,
            Some(m) => Ownership::Foreign(m.0),
            None => Ownership::Unmarked,
        }
    }

    /// `Ok` when the VM carries this mark, or carries none and is named `unmarked_name` (a
    /// VM the caller names explicitly: imported or recorded before marks existed). Otherwise
    /// [`Error::NotOwned`].
    pub fn check(&self, vmid: u32, cfg: &VmConfig, unmarked_name: Option<&str>) -> Result<()> {
        let name = cfg.get_str("name");
        let found = match self.ownership(cfg) {
            Ownership::Ours => return Ok(()),
            Ownership::Unmarked if unmarked_name.is_some() && name.as_deref() == unmarked_name => {
                return Ok(())
            }
            Ownership::Unmarked => None,
            Ownership::Foreign(f) => Some(f),
        };
        Err(Error::NotOwned {
            vmid,
            name,
            expected: self.0.clone(),
            found,
        })
    }
}

impl fmt::Display for OwnerMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` without any `waddle-owner:` line.
pub fn without_mark(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().starts_with(LINE_PREFIX))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Client {
    /// QEMU VMs in the cluster that carry `mark` (tagged [`OWNER_TAG`], mark in the
    /// description). Reads the config of every tagged VM.
    pub async fn find_owned_vms(&self, mark: &OwnerMark) -> Result<Vec<ClusterVm>> {
        let mut out = Vec::new();
        for vm in self.cluster_vms().await? {
            if vm.kind != "qemu" || !vm.tags.iter().any(|t| t == OWNER_TAG) {
                continue;
            }
            match self.vm_config(&vm.node, vm.vmid).await {
                Ok(cfg) if mark.ownership(&cfg) == Ownership::Ours => out.push(vm),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Add `mark` to an existing VM (tag and description line), keeping its other tags and
    /// description text. Used after an explicit import of an unmarked VM.
    pub async fn mark_vm(&self, node: &str, vmid: u32, mark: &OwnerMark) -> Result<()> {
        let cfg = self.vm_config(node, vmid).await?;
        if mark.ownership(&cfg) == Ownership::Ours && cfg.tags().iter().any(|t| t == OWNER_TAG) {
            return Ok(());
        }
        let mut tags = cfg.tags();
        if !tags.iter().any(|t| t == OWNER_TAG) {
            tags.insert(0, OWNER_TAG.to_string());
        }
        let text = without_mark(&cfg.get_str("description").unwrap_or_default());
        let mut p = crate::params::Params::new()
            .str("tags", tags.join(";"))
            .str("description", mark.describe(&text));
        if let Some(d) = cfg.digest() {
            p = p.str("digest", d);
        }
        self.update_vm_config(node, vmid, &p).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> VmConfig {
        VmConfig(serde_json::from_value(v).expect("config"))
    }

    #[test]
    fn marks_render_parse_and_compare() {
        let m = OwnerMark::new(&["waddle_talos_cluster", "prod", "cp-1"]);
        assert_eq!(m.line(), "waddle-owner: waddle_talos_cluster/prod/cp-1");
        let mut spec = VmSpec::new("cp-1", 2, 2048);
        spec.tags = vec!["talos".into()];
        spec.description = Some("Talos node cp-1".into());
        m.apply(&mut spec);
        m.apply(&mut spec); // idempotent
        assert_eq!(spec.tags, vec!["waddle", "talos"]);
        let desc = spec.description.clone().expect("description");
        assert_eq!(
            desc,
            "Talos node cp-1\nwaddle-owner: waddle_talos_cluster/prod/cp-1"
        );
        assert_eq!(OwnerMark::in_description(&desc), Some(m.clone()));
        let ours = cfg(json!({"name": "cp-1", "description": desc}));
        assert_eq!(m.ownership(&ours), Ownership::Ours);
        assert!(m.check(100, &ours, None).is_ok());
        let other = OwnerMark::new(&["waddle_talos_cluster", "prod", "cp-2"]);
        assert_eq!(
            other.ownership(&ours),
            Ownership::Foreign("waddle_talos_cluster/prod/cp-1".into())
        );
        let e = other.check(100, &ours, Some("cp-1")).unwrap_err();
        assert!(matches!(e, Error::NotOwned { vmid: 100, .. }), "{e}");
        assert!(e.to_string().contains("cp-1"), "{e}");
    }

    #[test]
    fn unmarked_vms_are_accepted_only_by_explicit_name() {
        let m = OwnerMark::new(&["waddle_sni_proxy", "edge"]);
        let foreign = cfg(json!({"name": "prod-db", "description": "the database"}));
        assert_eq!(m.ownership(&foreign), Ownership::Unmarked);
        let e = m.check(150, &foreign, None).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("VM 150 (prod-db)"), "{text}");
        assert!(text.contains("no waddle-owner mark"), "{text}");
        assert!(m.check(150, &foreign, Some("edge")).is_err());
        assert!(m.check(150, &foreign, Some("prod-db")).is_ok());
        assert_eq!(without_mark("a\nwaddle-owner: x/y\nb"), "a\nb");
    }
}
