//! The proxy VM's day 2 as data: what the provider runs through the VM's guest agent after
//! the seed (this crate knows no agent; the provider runs these steps with its shared guest
//! steps).
//!
//! * **In-place update** ([`update`]): write both versioned maps, the config to
//!   `<config>.new` and the hash to `<marker>.new`; `haproxy -c` the new config (a refusal:
//!   remove the staged files, the running HAProxy keeps its config); then [`Update::swap`]
//!   (atomic renames and a seamless `reload-or-restart`); then remove the maps of the previous
//!   config the new one no longer names ([`stale_maps`]).
//! * **Readiness after a create**: the marker at [`HASH_MARKER_PATH`] holds the expected hash
//!   and [`ACTIVE_ARGV`] succeeds. When the files are in place but HAProxy is not running and
//!   cloud-init has finished, `haproxy -c` the live config ([`check_argv`]) and run
//!   [`START_SCRIPT`].
//! * **Read / drift**: the live config at [`FilePaths::config`], the maps it names
//!   ([`live_map_paths`]) and their [`config_hash`](crate::config_hash).

pub use crate::cloudinit::HASH_MARKER_PATH;
use crate::render::{live_map_paths, Rendered};
#[cfg(doc)]
use crate::spec::FilePaths;

/// Where the VM keeps the configuration inputs it was built from, so an import can read
/// back what Proxmox does not know (routes, NIC addresses, cloud-init inputs).
pub const INPUTS_PATH: &str = "/etc/haproxy/waddle-inputs.json";

/// Whether HAProxy is running.
pub const ACTIVE_ARGV: [&str; 3] = ["systemctl", "is-active", "haproxy"];

/// Enable and (re)start HAProxy, once its live config passed `haproxy -c`.
pub const START_SCRIPT: &str = "systemctl enable haproxy && systemctl restart haproxy";

/// `haproxy -c -f <cfg>`.
pub fn check_argv(cfg: &str) -> [&str; 4] {
    ["haproxy", "-c", "-f", cfg]
}

/// The steps of an in-place update to a [`render_versioned`](crate::render_versioned)
/// rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// `(path, content)`, written in this order: both maps, the staged config, the staged
    /// marker.
    pub files: Vec<(String, String)>,
    /// The check of the staged config.
    pub check: Vec<String>,
    /// What a refused check removes again (the staged config and marker).
    pub staged: Vec<String>,
    /// `sh -c` script: install the staged config and marker, reload HAProxy.
    pub swap: String,
}

/// The in-place update to `r`.
pub fn update(r: &Rendered) -> Update {
    let cfg = &r.paths.config;
    let cfg_new = format!("{cfg}.new");
    let marker_new = format!("{HASH_MARKER_PATH}.new");
    Update {
        files: vec![
            (r.paths.exact_map.clone(), r.exact_map.clone()),
            (r.paths.wildcard_map.clone(), r.wildcard_map.clone()),
            (cfg_new.clone(), r.haproxy_cfg.clone()),
            (marker_new.clone(), format!("{}\n", r.config_hash)),
        ],
        check: check_argv(&cfg_new).map(String::from).to_vec(),
        swap: format!(
            "mv -f {cfg_new} {cfg} && mv -f {marker_new} {HASH_MARKER_PATH} && systemctl reload-or-restart haproxy"
        ),
        staged: vec![cfg_new, marker_new],
    }
}

/// The maps the previous config (`old_cfg`) named that `r` no longer uses.
pub fn stale_maps(r: &Rendered, old_cfg: Option<&str>) -> Vec<String> {
    let Some((old_e, old_w)) = old_cfg.and_then(live_map_paths) else {
        return Vec::new();
    };
    [old_e, old_w]
        .into_iter()
        .filter(|p| *p != r.paths.exact_map && *p != r.paths.wildcard_map)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{render_versioned, seed_layout, RouteSpec};

    #[test]
    fn an_update_stages_checks_and_swaps_and_names_the_stale_maps() {
        let v1 = render_versioned(&seed_layout("example.org")).unwrap();
        let mut spec = seed_layout("example.org");
        spec.routes.push(RouteSpec {
            hostnames: vec!["new.example.org".into()],
            backend: "10.10.0.9:443".into(),
            proxy_protocol: false,
            check: true,
        });
        let v2 = render_versioned(&spec).unwrap();
        let u = update(&v2);
        let paths: Vec<&str> = u.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                v2.paths.exact_map.as_str(),
                v2.paths.wildcard_map.as_str(),
                "/etc/haproxy/haproxy.cfg.new",
                "/etc/haproxy/waddle-config.sha256.new",
            ]
        );
        assert_eq!(
            u.check,
            ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg.new"]
        );
        assert_eq!(u.staged, [paths[2], paths[3]]);
        let reload = u.swap.find("systemctl reload-or-restart haproxy").unwrap();
        assert!(u.swap.find("mv -f /etc/haproxy/haproxy.cfg.new").unwrap() < reload);
        assert_eq!(stale_maps(&v2, Some(&v2.haproxy_cfg)), Vec::<String>::new());
        assert_eq!(stale_maps(&v2, None), Vec::<String>::new());
        let stale = stale_maps(&v2, Some(&v1.haproxy_cfg));
        assert!(!stale.is_empty());
        assert!(stale
            .iter()
            .all(|p| *p == v1.paths.exact_map || *p == v1.paths.wildcard_map));
    }
}
