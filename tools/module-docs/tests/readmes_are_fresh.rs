//! Every `modules/*/README.md` carries the tables its `.tf` files generate.

use std::path::Path;

#[test]
fn module_readmes_match_their_tf_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules");
    let dirs = waddle_module_docs::modules(&root).expect("modules");
    assert!(dirs.len() >= 3, "modules found: {dirs:?}");
    let mut stale = Vec::new();
    for dir in dirs {
        let (path, current, wanted) =
            waddle_module_docs::readme_of(&dir).unwrap_or_else(|e| panic!("{e}"));
        if current != wanted {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale module READMEs (run `cargo run -p waddle-module-docs`): {stale:?}"
    );
}
