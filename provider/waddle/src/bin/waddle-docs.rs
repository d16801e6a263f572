//! Generates the registry documentation in `docs/` from the provider's own schemas.
//!
//! ```text
//! cargo run -p terraform-provider-waddle --bin waddle-docs            # write docs/
//! cargo run -p terraform-provider-waddle --bin waddle-docs -- --check # exit 1 when stale
//! ```

use std::process::ExitCode;

use waddle_provider::docs;
use waddle_provider::WaddleProvider;

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let root = docs::repo_root();
    let generated = match docs::generate(&WaddleProvider::new(), &root.join("examples")) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("waddle-docs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let docs_dir = root.join("docs");
    if check {
        let problems = docs::stale(&generated, &docs_dir);
        if problems.is_empty() {
            println!("docs/ is up to date ({} generated files)", generated.len());
            return ExitCode::SUCCESS;
        }
        for p in problems {
            eprintln!("{p}");
        }
        eprintln!("run: cargo run -p terraform-provider-waddle --bin waddle-docs");
        return ExitCode::FAILURE;
    }
    match docs::write(&generated, &docs_dir) {
        Ok(changed) => {
            for c in &changed {
                println!("{c}");
            }
            println!(
                "docs/: {} generated files, {} changed",
                generated.len(),
                changed.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("waddle-docs: writing docs/: {e}");
            ExitCode::FAILURE
        }
    }
}
