//! `cargo run -p waddle-module-docs [-- --check]`: regenerates (or, with `--check`, verifies)
//! the generated tables of every `modules/*/README.md`.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../modules");
    let dirs = match waddle_module_docs::modules(&root) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("waddle-module-docs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = 0;
    for dir in dirs {
        match waddle_module_docs::readme_of(&dir) {
            Ok((path, current, wanted)) if current != wanted => {
                if check {
                    eprintln!("stale: {}", path.display());
                    stale += 1;
                } else if let Err(e) = std::fs::write(&path, wanted) {
                    eprintln!("waddle-module-docs: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                } else {
                    println!("wrote {}", path.display());
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("waddle-module-docs: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if stale > 0 {
        eprintln!("{stale} module README(s) are stale: run `cargo run -p waddle-module-docs`");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
