//! Fails when the committed registry docs (`docs/`) differ from what the provider's schemas
//! generate. Fix with: `cargo run -p terraform-provider-waddle --bin waddle-docs`.

use waddle_provider::docs;
use waddle_provider::WaddleProvider;

#[test]
fn docs_are_up_to_date() {
    let root = docs::repo_root();
    let generated = docs::generate(&WaddleProvider::new(), &root.join("examples")).unwrap();
    for page in [
        "index.md",
        "data-sources/talos_image.md",
        "functions/talos_schematic_id.md",
    ] {
        assert!(generated.contains_key(page), "{page} is not generated");
    }
    let problems = docs::stale(&generated, &root.join("docs"));
    assert!(
        problems.is_empty(),
        "docs/ is stale:\n  {}\nregenerate with: cargo run -p terraform-provider-waddle --bin waddle-docs",
        problems.join("\n  ")
    );
}

#[test]
fn staleness_is_detected() {
    let root = docs::repo_root();
    let generated = docs::generate(&WaddleProvider::new(), &root.join("examples")).unwrap();
    let dir = std::env::temp_dir().join(format!("waddle-docs-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    docs::write(&generated, &dir).unwrap();
    assert!(docs::stale(&generated, &dir).is_empty());
    // An edited page, a missing page and a page for something that does not exist.
    std::fs::write(dir.join("index.md"), "# edited\n").unwrap();
    std::fs::remove_file(dir.join("functions/talos_schematic_id.md")).unwrap();
    std::fs::create_dir_all(dir.join("resources")).unwrap();
    std::fs::write(dir.join("resources/gone.md"), "old\n").unwrap();
    let problems = docs::stale(&generated, &dir);
    assert_eq!(problems.len(), 3, "{problems:?}");
    // Writing again repairs everything and removes the orphan.
    let changed = docs::write(&generated, &dir).unwrap();
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert!(docs::stale(&generated, &dir).is_empty());
    assert!(!dir.join("resources/gone.md").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pages_document_every_attribute_and_default() {
    let root = docs::repo_root();
    let generated = docs::generate(&WaddleProvider::new(), &root.join("examples")).unwrap();
    let ds = &generated["data-sources/talos_image.md"];
    for attr in waddle_provider::data_sources::talos_image::schema()
        .block
        .attributes
        .keys()
    {
        assert!(ds.contains(&format!("- `{attr}` (")), "{attr} missing");
    }
    assert!(ds.contains("Defaults to `\"nocloud\"`"));
    assert!(ds.contains("```terraform\ndata \"waddle_talos_image\""));
    let f = &generated["functions/talos_schematic_id.md"];
    assert!(f.contains("talos_schematic_id(schematic string) string"));
    let index = &generated["index.md"];
    assert!(index.contains("- `api_token` (String, Sensitive)"));
    assert!(index.contains("PROXMOX_VE_ENDPOINT"));
}
