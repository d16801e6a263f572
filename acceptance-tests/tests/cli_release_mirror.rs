//! A release installed the way a registry installs it: `scripts/release.sh` packages the
//! provider (zip, SHA256SUMS, detached GPG signature, manifest), an HTTPS provider network
//! mirror on loopback serves the zip, and the real CLI runs `init` with no `-plugin-dir`,
//! records the mirror's hashes in `.terraform.lock.hcl` and applies the offline
//! `examples/talos-image`. A zip that does not match its hashes fails `init`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use sha2::{Digest, Sha256};
use waddle_acceptance::harness::provider::REGISTRY_HOSTS;
use waddle_acceptance::harness::{self, provider, Cli};
use waddle_acceptance::mirror::{h1_of_zip, MirrorFiles, MirrorServer};

const VERSION: &str = "0.2.0";
const PACKAGE: &str = "terraform-provider-waddle";
/// The mirror's own loopback address (one per emulated host).
const MIRROR_IP: [u8; 4] = [127, 66, 0, 1];

fn run(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn must(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what} failed: {}", text(&out));
    out
}

fn sha256_hex(p: &Path) -> String {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
    hex::encode(Sha256::digest(bytes))
}

/// A throwaway RSA signing key (the registries accept RSA and DSA keys) in its own keyring.
fn throwaway_key(gnupg: &Path) -> String {
    std::fs::create_dir_all(gnupg).expect("gnupg home");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(gnupg, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    must(
        run(
            Command::new("gpg")
                .env("GNUPGHOME", gnupg)
                .args(["--batch", "--passphrase", "", "--quick-gen-key"])
                .args([
                    "waddle release test <release-test@waddle.invalid>",
                    "rsa2048",
                    "sign",
                    "never",
                ]),
            "gpg --quick-gen-key",
        ),
        "gpg --quick-gen-key",
    );
    let out = must(
        run(
            Command::new("gpg").env("GNUPGHOME", gnupg).args([
                "--batch",
                "--with-colons",
                "--list-secret-keys",
            ]),
            "gpg --list-secret-keys",
        ),
        "gpg --list-secret-keys",
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .expect("fingerprint of the throwaway key")
}

/// Runs `scripts/release.sh` on the binary the test command built and checks every artifact.
fn release(work: &Path) -> PathBuf {
    let bin = provider::provider_binary().expect("provider binary");
    let gnupg = work.join("gnupg");
    let fpr = throwaway_key(&gnupg);
    let dist = work.join("dist");
    must(
        run(
            Command::new("bash")
                .arg(harness::repo_root().join("scripts/release.sh"))
                .args([VERSION, &dist.display().to_string()])
                .env("GNUPGHOME", &gnupg)
                .env("GPG_FINGERPRINT", &fpr)
                .env("WADDLE_RELEASE_BIN", bin)
                .env_remove("WADDLE_RELEASE_UNSIGNED"),
            "release.sh",
        ),
        "release.sh",
    );
    let platform = provider::platform();
    let zip = format!("{PACKAGE}_{VERSION}_{platform}.zip");
    let sums = format!("{PACKAGE}_{VERSION}_SHA256SUMS");
    let manifest = format!("{PACKAGE}_{VERSION}_manifest.json");
    let mut names: Vec<String> = std::fs::read_dir(&dist)
        .expect("dist")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = vec![
        zip.clone(),
        sums.clone(),
        format!("{sums}.sig"),
        manifest.clone(),
    ];
    expected.sort();
    assert_eq!(names, expected, "release artifacts");

    // The manifest says protocol 6 (OpenTofu's registry assumes 5 without it).
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dist.join(&manifest)).expect("manifest"))
            .expect("manifest is JSON");
    assert_eq!(m["version"], 1, "{m}");
    assert_eq!(
        m["metadata"]["protocol_versions"],
        serde_json::json!(["6.0"]),
        "{m}"
    );

    // SHA256SUMS lists the zip and the manifest with their real hashes, and is signed.
    let sums_text = std::fs::read_to_string(dist.join(&sums)).expect("sums");
    let mut listed: Vec<(String, String)> = sums_text
        .lines()
        .map(|l| {
            let (h, n) = l
                .split_once("  ")
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (n.to_string(), h.to_string())
        })
        .collect();
    listed.sort();
    let mut want = vec![
        (manifest.clone(), sha256_hex(&dist.join(&manifest))),
        (zip.clone(), sha256_hex(&dist.join(&zip))),
    ];
    want.sort();
    assert_eq!(listed, want, "SHA256SUMS");
    must(
        run(
            Command::new("gpg")
                .env("GNUPGHOME", &gnupg)
                .arg("--verify")
                .arg(dist.join(format!("{sums}.sig")))
                .arg(dist.join(&sums)),
            "gpg --verify",
        ),
        "gpg --verify of the SHA256SUMS signature",
    );

    // The zip holds exactly terraform-provider-waddle_vVERSION with the built binary's bytes:
    // its h1 hash equals the h1 of that single file.
    let member = format!("{PACKAGE}_v{VERSION}");
    let line = format!("{}  {member}\n", sha256_hex(bin));
    let expected_h1 = format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(line.as_bytes()))
    );
    assert_eq!(
        h1_of_zip(&dist.join(&zip)).expect("h1"),
        expected_h1,
        "zip member"
    );
    dist
}

/// Runs the CLI in `dir` with the mirror-only CLI config and the mirror's CA trusted.
fn tf(cli: &Cli, cfg: &Path, ca: &Path, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(&cli.path);
    cmd.current_dir(dir).args(args);
    cli_env(&mut cmd, cfg, ca);
    run(&mut cmd, args.first().copied().unwrap_or("cli"))
}

fn cli_env(cmd: &mut Command, cfg: &Path, ca: &Path) {
    cmd.env("TF_CLI_CONFIG_FILE", cfg)
        .env("SSL_CERT_FILE", ca)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .env_remove("TF_CLI_ARGS")
        .env_remove("TF_CLI_ARGS_init");
}

/// A work dir with examples/talos-image and a CLI config whose only installation method is the
/// network mirror.
fn workdir(work: &Path, name: &str, server: &MirrorServer) -> (PathBuf, PathBuf, PathBuf) {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).expect("work dir");
    let example = harness::repo_root().join("examples/talos-image/main.tf");
    std::fs::copy(&example, dir.join("main.tf")).expect("example");
    let cfg = work.join(format!("{name}.tfrc"));
    std::fs::write(
        &cfg,
        format!(
            "provider_installation {{\n  network_mirror {{\n    url = \"{}\"\n  }}\n}}\n",
            server.url()
        ),
    )
    .expect("cli config");
    let ca = work.join(format!("{name}-ca.pem"));
    std::fs::write(&ca, &server.ca_pem).expect("ca");
    (dir, cfg, ca)
}

#[test]
fn a_release_installs_from_a_network_mirror_and_a_tampered_zip_is_refused() {
    let cli = Cli::get().expect("a Terraform/OpenTofu CLI");
    let base = harness::work_base();
    std::fs::create_dir_all(&base).expect("work base");
    let tmp = tempfile::Builder::new()
        .prefix("release-mirror-")
        .tempdir_in(&base)
        .expect("tempdir");
    let work = tmp.path();
    let dist = release(work);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ip = std::net::IpAddr::from(MIRROR_IP);
    let files = MirrorFiles::from_release(
        &dist,
        PACKAGE,
        VERSION,
        &REGISTRY_HOSTS,
        "waddle-social",
        "waddle",
    )
    .expect("mirror files");
    let platform = provider::platform();
    let (_, h1, zh) = files
        .archives
        .get(&platform)
        .cloned()
        .expect("our platform");

    // 1. Installed from the mirror, hashes recorded, the example applies.
    let server = rt
        .block_on(MirrorServer::start(ip, files.clone()))
        .expect("mirror");
    let (dir, cfg, ca) = workdir(work, "good", &server);
    let init = tf(cli, &cfg, &ca, &dir, &["init", "-input=false", "-no-color"]);
    assert!(
        init.status.success(),
        "{cli}: init from the network mirror failed: {}\nmirror requests: {:?}",
        text(&init),
        server.requests()
    );
    let lock = std::fs::read_to_string(dir.join(".terraform.lock.hcl")).expect("lock file");
    assert!(
        lock.contains(&format!("version     = \"{VERSION}\"")) || lock.contains(VERSION),
        "{lock}"
    );
    // The CLI hashed what it unpacked (h1) and it is the mirror's h1; every hash it recorded is
    // one the mirror reported (newer CLIs also record the mirror's zh).
    assert!(lock.contains(&h1), "lock file lacks {h1}:\n{lock}");
    let recorded: Vec<&str> = lock
        .split('"')
        .filter(|t| t.starts_with("h1:") || t.starts_with("zh:"))
        .collect();
    assert!(
        recorded.iter().all(|t| *t == h1 || *t == zh),
        "lock file records a hash the mirror did not report ({h1}, {zh}):\n{lock}"
    );
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("200 ") && r.ends_with(&format!("_{platform}.zip"))),
        "the zip came from the mirror: {reqs:?}"
    );
    let apply = tf(
        cli,
        &cfg,
        &ca,
        &dir,
        &["apply", "-auto-approve", "-input=false", "-no-color"],
    );
    assert!(apply.status.success(), "{cli}: apply: {}", text(&apply));
    let out = must(
        tf(cli, &cfg, &ca, &dir, &["output", "-raw", "schematic_id"]),
        "output",
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "schematic_id {id:?}"
    );
    drop(server);

    // 2. The same mirror serving a zip whose bytes differ from its hashes: init fails.
    let zip = dist.join(format!("{PACKAGE}_{VERSION}_{platform}.zip"));
    let tampered = work.join("tampered.zip");
    must(
        run(
            Command::new("python3")
                .arg("-c")
                .arg(
                    "import sys, zipfile\n\
                     src, dst = sys.argv[1], sys.argv[2]\n\
                     with zipfile.ZipFile(src) as z:\n\
                     \x20   infos = z.infolist(); data = [bytearray(z.read(i)) for i in infos]\n\
                     data[0][-1] ^= 0xff\n\
                     with zipfile.ZipFile(dst, 'w') as o:\n\
                     \x20   [o.writestr(i, bytes(d)) for i, d in zip(infos, data)]\n",
                )
                .arg(&zip)
                .arg(&tampered),
            "tamper",
        ),
        "making a tampered zip",
    );
    let mut bad = files;
    bad.tamper(&platform, std::fs::read(&tampered).expect("tampered zip"));
    let server = rt.block_on(MirrorServer::start(ip, bad)).expect("mirror");
    let (dir, cfg, ca) = workdir(work, "tampered", &server);
    let init = tf(cli, &cfg, &ca, &dir, &["init", "-input=false", "-no-color"]);
    let reqs = server.requests();
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("200 ") && r.ends_with(&format!("_{platform}.zip"))),
        "the tampered zip was served (so a failure is the hash check, not a 404): {reqs:?}"
    );
    assert!(
        !init.status.success(),
        "{cli}: init accepted a tampered zip: {}",
        text(&init)
    );
    let msg = text(&init).to_lowercase();
    assert!(
        msg.contains("checksum") || msg.contains("hash"),
        "{cli}: init failed, but not on the package hash: {msg}"
    );
    let installed = dir.join(".terraform/providers");
    let any_binary = walk(&installed).into_iter().any(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(PACKAGE))
    });
    assert!(
        !any_binary,
        "a tampered provider was installed under {}",
        installed.display()
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
