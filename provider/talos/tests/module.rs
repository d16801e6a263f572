//! Checks on `modules/talos-cluster`: every variable typed and described, the secret
//! outputs sensitive, and the module's default layout accepted by this crate.

mod common;

use std::fs;

fn blocks<'a>(text: &'a str, kind: &str) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    let needle = format!("{kind} \"");
    let mut rest = text;
    while let Some(i) = rest.find(&needle) {
        let at_line_start = i == 0 || rest[..i].ends_with('\n');
        let after = &rest[i + needle.len()..];
        let name_end = after.find('"').unwrap();
        let name = after[..name_end].to_string();
        // the block body: up to the next top-level closing brace
        let body_start = after.find('{').unwrap();
        let mut depth = 0;
        let mut end = body_start;
        for (j, c) in after[body_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = body_start + j;
                        break;
                    }
                }
                _ => {}
            }
        }
        if at_line_start {
            out.push((name, &after[body_start..=end]));
        }
        rest = &after[end..];
    }
    out
}

fn module_file(name: &str) -> String {
    let p = common::repo_root().join("modules/talos-cluster").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn every_variable_is_typed_and_described() {
    let vars = module_file("variables.tf");
    let blocks = blocks(&vars, "variable");
    assert!(blocks.len() >= 20, "found {} variables", blocks.len());
    for (name, body) in &blocks {
        assert!(body.contains("\n  type "), "variable {name} has no type");
        assert!(
            body.contains("\n  description "),
            "variable {name} has no description"
        );
    }
    for want in [
        "cluster_name",
        "vip",
        "gateway",
        "control_plane_addresses",
        "cores",
        "memory_mib",
        "disk_size_gib",
        "cni",
        "kube_proxy",
        "nameservers",
    ] {
        assert!(
            blocks.iter().any(|(n, _)| n == want),
            "variable {want} missing"
        );
    }
}

#[test]
fn secret_outputs_are_sensitive() {
    let outs = module_file("outputs.tf");
    let blocks = blocks(&outs, "output");
    for want in ["talosconfig", "kubeconfig"] {
        let (_, body) = blocks
            .iter()
            .find(|(n, _)| n == want)
            .unwrap_or_else(|| panic!("output {want} missing"));
        assert!(
            body.contains("sensitive   = true") || body.contains("sensitive = true"),
            "output {want} not sensitive"
        );
        assert!(body.contains("description"), "output {want} not described");
    }
}

#[test]
fn default_layout_matches_the_original_and_validates() {
    let vars = module_file("variables.tf");
    for want in [
        r#"default     = ["10.10.0.10", "10.10.0.11", "10.10.0.12"]"#,
        r#"default     = "10.10.0.1""#,
        r#"default     = "10.10.0.20""#,
        r#"default     = ["1.1.1.1", "8.8.8.8"]"#,
        r#"default     = "none""#,
        "default     = 3\n",
        "default     = 8192\n",
        "default     = 10\n",
    ] {
        assert!(vars.contains(want), "variables.tf lacks {want}");
    }
    // the same layout, as the resource receives it, is valid for this crate
    let mut spec = common::original_spec();
    for (i, n) in spec.nodes.values_mut().enumerate() {
        n.mac = Some(format!("bc:24:11:00:00:{:02x}", 110 + i));
    }
    assert!(waddle_talos::validate(&spec).is_empty());
}
