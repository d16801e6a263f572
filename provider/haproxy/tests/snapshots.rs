//! Snapshots of the rendered files (production paths).

mod common;

use waddle_haproxy::render;

#[test]
fn rendered_files_snapshots() {
    for (name, spec) in common::named_specs() {
        let r = render(&spec).expect("renders");
        insta::assert_snapshot!(format!("{name}_haproxy_cfg"), r.haproxy_cfg);
        insta::assert_snapshot!(format!("{name}_exact_map"), r.exact_map);
        insta::assert_snapshot!(format!("{name}_wildcard_map"), r.wildcard_map);
        insta::assert_snapshot!(format!("{name}_config_hash"), r.config_hash);
    }
}
