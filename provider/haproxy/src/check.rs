//! Running the real `haproxy -c` on a configuration file.
//!
//! Used by the tests and the benchmark, and usable by an emulated guest that wants to check
//! files written through the guest agent with the real binary when it is installed.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Result of a successful check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput {
    /// Combined stdout + stderr.
    pub output: String,
    /// Lines containing `[WARNING]`.
    pub warnings: Vec<String>,
}

/// Why a check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The binary could not be started (not installed?).
    #[error("could not run `{binary}`: {source}")]
    Spawn {
        /// Binary that was run.
        binary: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// HAProxy refused the configuration; `output` holds its `[ALERT]` lines.
    #[error("haproxy -c failed ({status}): {output}")]
    Invalid {
        /// Exit status text.
        status: String,
        /// Combined output.
        output: String,
    },
    /// The check did not finish in time and was killed.
    #[error("haproxy -c did not finish within {0:?}")]
    Timeout(Duration),
}

/// Runs `<binary> -c -f <config>` (bounded by `timeout`) and returns its output if HAProxy
/// accepts the configuration.
pub fn haproxy_check(
    binary: &str,
    config: &Path,
    timeout: Duration,
) -> Result<CheckOutput, CheckError> {
    let mut child = Command::new(binary)
        .arg("-c")
        .arg("-f")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CheckError::Spawn {
            binary: binary.to_string(),
            source,
        })?;
    // Drain both pipes on threads so a chatty check can never block on a full pipe.
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CheckError::Timeout(timeout));
            }
            Err(source) => {
                return Err(CheckError::Spawn {
                    binary: binary.to_string(),
                    source,
                })
            }
        }
    };
    let mut output = out_t.join().unwrap_or_default();
    output.push_str(&err_t.join().unwrap_or_default());
    if !status.success() {
        return Err(CheckError::Invalid {
            status: status.to_string(),
            output,
        });
    }
    let warnings = output
        .lines()
        .filter(|l| l.contains("[WARNING]"))
        .map(str::to_string)
        .collect();
    Ok(CheckOutput { output, warnings })
}
