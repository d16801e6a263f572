//! Managed resources: a directory per resource (`mod.rs`, `schema.rs`, `model.rs`,
//! `validate.rs`, `plan.rs`, `ops/`, `tests.rs`), the shared VM layer (`vm/`) and `timeouts`.

use std::sync::Arc;

use waddle_framework::prelude::*;
use waddle_framework::Resource;

pub mod host_firewall;
pub mod network;
pub mod sni_proxy;
pub mod talos_cluster;
pub mod teleport_node;
pub mod timeouts;
pub mod vm;

/// Every managed resource of the provider.
pub fn all() -> Vec<Arc<dyn Resource>> {
    vec![
        Arc::new(host_firewall::HostFirewall),
        Arc::new(Typed(network::Network)),
        Arc::new(Typed(vm::Vm(sni_proxy::SniProxy))),
        Arc::new(talos_cluster::TalosCluster),
        Arc::new(Typed(vm::Vm(teleport_node::TeleportNode))),
    ]
}

/// `detail`, led by `path` when the path is nested: Terraform shows a diagnostic on a nested
/// attribute only at the resource's first line, so `routes[2].backend: ...` in the text is
/// what tells the user which element is wrong.
pub(crate) fn named(path: &AttributePath, detail: impl std::fmt::Display) -> String {
    if path.steps().len() > 1 {
        format!("{path}: {detail}")
    } else {
        detail.to_string()
    }
}

/// An error at `path` whose detail names the element (see [`named`]).
pub(crate) fn error_named(
    diags: &mut Diagnostics,
    path: AttributePath,
    summary: &str,
    detail: impl std::fmt::Display,
) {
    let detail = named(&path, detail);
    diags.error_at(path, summary, detail);
}

/// The most diagnostics one validation reports; the rest are summarized in one more.
pub const MAX_DIAGNOSTICS: usize = 20;

/// Moves `found` into `diags`, at most [`MAX_DIAGNOSTICS`] of them, then one "and N more"
/// (an error when any left out is one), so bad input cannot flood the user or the protocol.
///
/// Each detail also names its element (see [`named`]) unless it already does.
pub(crate) fn capped(found: Diagnostics, diags: &mut Diagnostics) {
    let found = Diagnostics(
        found
            .into_iter()
            .map(|mut d| {
                if let Some(p) = &d.attribute {
                    if !d.detail.starts_with(&p.to_string()) {
                        d.detail = named(p, &d.detail);
                    }
                }
                d
            })
            .collect(),
    );
    let total = found.len();
    if total <= MAX_DIAGNOSTICS {
        diags.extend(found);
        return;
    }
    let rest_has_error = found.iter().skip(MAX_DIAGNOSTICS).any(Diagnostic::is_error);
    for d in found.into_iter().take(MAX_DIAGNOSTICS) {
        diags.push(d);
    }
    let summary = format!("and {} more", total - MAX_DIAGNOSTICS);
    let detail = format!(
        "{total} problems were found; the first {MAX_DIAGNOSTICS} are shown. Fix them and plan again to see the rest."
    );
    if rest_has_error {
        diags.error(summary, detail);
    } else {
        diags.warning(summary, detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_lead_the_detail() {
        let nested = AttributePath::attr("routes")
            .then_index(2)
            .then_attr("backend");
        assert_eq!(named(&nested, "bad"), "routes[2].backend: bad");
        assert_eq!(named(&AttributePath::attr("maxconn"), "bad"), "bad");
    }

    #[test]
    fn diagnostics_are_capped_with_a_summary() {
        let mut found = Diagnostics::new();
        for i in 0..1000 {
            found.error_at(
                AttributePath::attr("nodes").then_key(format!("n{i}")),
                "bad",
                "x",
            );
        }
        let mut out = Diagnostics::new();
        capped(found, &mut out);
        assert_eq!(out.len(), MAX_DIAGNOSTICS + 1);
        let last = out.iter().last().unwrap();
        assert!(last.is_error());
        assert_eq!(last.summary, "and 980 more");
        let mut named_once = Diagnostics::new();
        let role = AttributePath::attr("nodes")
            .then_key("cp1")
            .then_attr("role");
        named_once.error_at(role.clone(), "Invalid role", "\"boss\": must be ...");
        error_named(&mut named_once, role, "Invalid role", "again");
        let mut out = Diagnostics::new();
        capped(named_once, &mut out);
        let details: Vec<&str> = out.iter().map(|d| d.detail.as_str()).collect();
        assert_eq!(
            details,
            [
                r#"nodes["cp1"].role: "boss": must be ..."#,
                r#"nodes["cp1"].role: again"#
            ]
        );
        let mut few = Diagnostics::new();
        few.warning("w", "x");
        let mut out = Diagnostics::new();
        capped(few.clone(), &mut out);
        assert_eq!(out, few);
    }
}
