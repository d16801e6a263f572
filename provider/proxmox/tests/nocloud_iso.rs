//! The NoCloud seed ISO checked with real tools: `isoinfo` (genisoimage) and `xorriso`.
//! Both are installed by `scripts/install-test-deps.sh`.

use std::path::Path;
use std::process::Command;

use waddle_proxmox::nocloud::{build_iso, NoCloudSeed};

fn run(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} not runnable ({e}); run scripts/install-test-deps.sh"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Run xorriso and insist it reports no problem with the image.
fn xorriso_clean(args: &[&str]) -> String {
    let out = Command::new("xorriso")
        .args(args)
        .output()
        .expect("xorriso");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "xorriso {args:?}: {err}");
    for bad in ["SORRY", "FAILURE", "WARNING", "FATAL", "damaged"] {
        assert!(!err.contains(bad), "xorriso {args:?} complained:\n{err}");
    }
    eprintln!("{err}");
    String::from_utf8(out.stdout).unwrap()
}

fn text(cmd: &str, args: &[&str]) -> String {
    String::from_utf8(run(cmd, args)).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn seed_iso_is_read_back_by_isoinfo_and_xorriso() {
    let big: String = (0..400)
        .map(|i| format!("  - echo line {i} of a long runcmd list\n"))
        .collect();
    let seed = NoCloudSeed {
        user_data: format!("#cloud-config\nhostname: sni-proxy\nruncmd:\n{big}"),
        meta_data: "instance-id: waddle-sni-1\nlocal-hostname: sni-proxy\n".into(),
        network_config: Some(
            "version: 2\nethernets:\n  eth0:\n    addresses: [10.10.0.2/24]\n".into(),
        ),
        vendor_data: Some(String::new()),
    };
    assert!(
        seed.user_data.len() > 2 * 2048,
        "exercise multi-sector files"
    );
    let iso = seed.build_iso(Some(1_767_225_600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "seed.iso", &iso);

    let info = text("isoinfo", &["-d", "-i", &path]);
    assert!(info.contains("Volume id: cidata"), "{info}");
    assert!(info.contains("Joliet with UCS level 3 found"), "{info}");
    let blocks = format!("Volume size is: {}", iso.len() / 2048);
    assert!(info.contains(&blocks), "{info}");

    let listing = text("isoinfo", &["-J", "-l", "-i", &path]);
    for name in ["user-data", "meta-data", "network-config", "vendor-data"] {
        assert!(
            listing.contains(name),
            "{name} missing from Joliet listing:\n{listing}"
        );
    }

    let expected: [(&str, &[u8]); 4] = [
        ("/user-data", seed.user_data.as_bytes()),
        ("/meta-data", seed.meta_data.as_bytes()),
        (
            "/network-config",
            seed.network_config.as_deref().unwrap().as_bytes(),
        ),
        ("/vendor-data", b""),
    ];
    for (name, bytes) in expected {
        let got = run("isoinfo", &["-J", "-x", name, "-i", &path]);
        assert_eq!(got, bytes, "content of {name} via Joliet");
    }
    // The primary (8.3) tree points at the same data.
    let got = run("isoinfo", &["-x", "/USER_DAT.;1", "-i", &path]);
    assert_eq!(got, seed.user_data.as_bytes());

    let found = xorriso_clean(&["-indev", &path, "-find", "/", "-type", "f"]);
    for name in ["user-data", "meta-data", "network-config", "vendor-data"] {
        assert!(
            found.contains(&format!("'/{name}'")),
            "xorriso -find:\n{found}"
        );
    }
    // xorriso extracts byte-identical files (reads the Joliet tree)
    let out = dir.path().join("ud");
    let out_s = out.to_str().unwrap();
    run(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            &path,
            "-extract",
            "/user-data",
            out_s,
        ],
    );
    assert_eq!(std::fs::read(&out).unwrap(), seed.user_data.as_bytes());
}

#[test]
fn many_files_spill_directories_over_one_sector() {
    // 60 files with long names need more than one directory sector in both trees.
    let names: Vec<String> = (0..60)
        .map(|i| format!("file-number-{i:03}-with-a-long-name.txt"))
        .collect();
    let datas: Vec<Vec<u8>> = (0..60)
        .map(|i| format!("payload {i}\n").into_bytes())
        .collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&datas)
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let iso = build_iso("cidata", &files, Some(0)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "many.iso", &iso);
    let listing = text("isoinfo", &["-J", "-l", "-i", &path]);
    for n in &names {
        assert!(listing.contains(n.as_str()), "{n} missing");
    }
    let got = run(
        "isoinfo",
        &[
            "-J",
            "-x",
            "/file-number-059-with-a-long-name.txt",
            "-i",
            &path,
        ],
    );
    assert_eq!(got, b"payload 59\n");
    let found = text("xorriso", &["-indev", &path, "-find", "/", "-type", "f"]);
    assert_eq!(
        found.lines().filter(|l| l.contains("file-number-")).count(),
        60
    );
}
