//! Import by `<cluster_name>:<path to secrets.yaml>`: the cluster name and its secrets; the
//! read that follows finds the rest (`imported.rs`).

use waddle_framework::prelude::*;
use waddle_talos::SecretsBundle;

use super::super::{to_value, ClusterModel};

/// The largest secrets file an import reads (a real `secrets.yaml` is a few KiB).
pub const MAX_SECRETS_FILE: u64 = 1024 * 1024;

/// Why an import's secrets file was not read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsFileError {
    /// It could not be inspected or read.
    #[error("reading {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A directory, device, FIFO or socket: only a regular file is read.
    #[error("{path:?} is not a regular file")]
    NotAFile { path: String },
    /// Larger than [`MAX_SECRETS_FILE`].
    #[error("{path:?} is larger than {MAX_SECRETS_FILE} bytes, too large for a secrets bundle")]
    TooLarge { path: String },
    /// Not text.
    #[error("{path:?} is not UTF-8 text")]
    NotText { path: String },
}

/// Reads the secrets file named by an import ID: a regular file of at most
/// [`MAX_SECRETS_FILE`] bytes. The type is checked before the file is opened (opening a FIFO
/// would block) and again on the open handle, and the read is bounded even if the file grows.
pub fn read_secrets_file(path: &str) -> Result<String, SecretsFileError> {
    use std::io::Read as _;
    let io = |source| SecretsFileError::Io {
        path: path.to_string(),
        source,
    };
    let regular = |m: &std::fs::Metadata| -> Result<(), SecretsFileError> {
        if !m.is_file() {
            Err(SecretsFileError::NotAFile {
                path: path.to_string(),
            })
        } else if m.len() > MAX_SECRETS_FILE {
            Err(SecretsFileError::TooLarge {
                path: path.to_string(),
            })
        } else {
            Ok(())
        }
    };
    regular(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    regular(&file.metadata().map_err(io)?)?;
    let mut buf = Vec::new();
    file.take(MAX_SECRETS_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_SECRETS_FILE {
        return Err(SecretsFileError::TooLarge {
            path: path.to_string(),
        });
    }
    String::from_utf8(buf).map_err(|_| SecretsFileError::NotText {
        path: path.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------

/// `<cluster_name>:<path to secrets.yaml>`.
pub fn import(id: &str, diags: &mut Diagnostics) -> Option<Value> {
    let Some((name, path)) = id.split_once(':') else {
        diags.error(
            "Invalid import ID",
            format!("{id:?}: expected <cluster_name>:<path to secrets.yaml>"),
        );
        return None;
    };
    let text = match super::super::read_secrets_file(path) {
        Ok(t) => t,
        Err(e) => {
            diags.error("Invalid import ID", e.to_string());
            return None;
        }
    };
    let bundle = match SecretsBundle::from_yaml(&text) {
        Ok(b) => b,
        Err(e) => {
            diags.error("Invalid secrets.yaml", format!("{path}: {e}"));
            return None;
        }
    };
    let yaml = bundle.to_yaml().ok()?;
    let m = ClusterModel {
        id: Some(name.to_string()),
        cluster_name: name.to_string(),
        machine_secrets: Some(yaml),
        bootstrapped: Some(true),
        ..Default::default()
    };
    to_value(&m, diags)
}
