//! `podSubnets` / `serviceSubnets` in config patches: Talos parses them with Go's
//! `netip.ParsePrefix` and refuses the configuration otherwise, so the provider refuses them
//! at plan, at the patch's path, and accepts exactly what Talos accepts.

mod common;

use common::original_spec;
use waddle_talos::{validate, Issue};

fn patch_errors(patch: &str) -> Vec<(String, String)> {
    let mut spec = original_spec();
    spec.config_patches = vec![patch.to_string()];
    validate(&spec)
        .into_iter()
        .filter(Issue::is_error)
        .map(|i| (i.path.to_string(), i.message))
        .collect()
}

fn subnets_patch(key: &str, value: &str) -> String {
    format!("cluster:\n  network:\n    {key}:\n      - {value:?}\n")
}

#[test]
fn invalid_pod_and_service_subnets_are_refused_at_the_patch() {
    for key in ["podSubnets", "serviceSubnets"] {
        for bad in [
            "10.244.0.0",
            "10.244.0.0/33",
            "10.244.0.256/16",
            "10.244.0.0/016",
            "10.244.0.0/+16",
            "10.244.0.0/",
            "fd00::/129",
            "not-a-subnet",
            "",
        ] {
            let errs = patch_errors(&subnets_patch(key, bad));
            assert!(
                errs.iter().any(|(p, m)| p == "config_patches[0]"
                    && m.contains(&format!("cluster.network.{key}[0]"))
                    && m.contains("not a valid subnet")),
                "{key} = {bad:?}: {errs:#?}"
            );
        }
    }
}

#[test]
fn subnets_talos_accepts_pass() {
    for key in ["podSubnets", "serviceSubnets"] {
        for good in [
            "10.244.0.0/16",
            "10.244.0.1/16",
            "0.0.0.0/0",
            "fd00:10:244::/56",
        ] {
            let errs = patch_errors(&subnets_patch(key, good));
            assert!(errs.is_empty(), "{key} = {good:?}: {errs:#?}");
        }
    }
}
