//! `waddle-sandbox` as a child process, for tests that treat it as a real Proxmox VE: only its
//! env file (what a user would export) and the API are used.

use std::time::Duration;

use super::target::PveTarget;

/// `waddle-sandbox` as a child process (killed on drop).
pub struct Sandbox {
    child: std::process::Child,
    /// The variables of its env file (PROXMOX_VE_ENDPOINT, _API_TOKEN, _CA_CERT, _NODE).
    pub env: std::collections::HashMap<String, String>,
}

impl Sandbox {
    /// Starts `bin` (the `waddle-sandbox` binary; tests pass `env!("CARGO_BIN_EXE_waddle-sandbox")`)
    /// listening on `listen` (a loopback address), its env file in `dir`, and waits for it.
    pub fn start(bin: &std::path::Path, dir: &std::path::Path, listen: &str) -> Sandbox {
        let env_file = dir.join("sandbox.env");
        let child = std::process::Command::new(bin)
            .arg("--env-file")
            .arg(&env_file)
            .arg("--listen")
            .arg(listen)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn waddle-sandbox");
        let mut sb = Sandbox {
            child,
            env: Default::default(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&env_file) {
                sb.env = text
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                if sb.env.contains_key("PROXMOX_VE_NODE") {
                    return sb;
                }
            }
            if let Ok(Some(st)) = sb.child.try_wait() {
                panic!("waddle-sandbox exited early: {st}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waddle-sandbox wrote no env file within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What a user would export: PROXMOX_VE_ENDPOINT/API_TOKEN/CA_CERT (a file path) from the
    /// env file, plus PROXMOX_VE_ACC_NODE.
    pub fn target(&self) -> PveTarget {
        let mut vars = self.env.clone();
        vars.insert(
            "PROXMOX_VE_ACC_NODE".into(),
            self.env["PROXMOX_VE_NODE"].clone(),
        );
        assert!(
            !vars["PROXMOX_VE_CA_CERT"].contains("-----BEGIN"),
            "the sandbox passes the CA as a file path"
        );
        PveTarget::real_from(|k| vars.get(k).cloned())
            .expect("sandbox env")
            .expect("all three variables")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
