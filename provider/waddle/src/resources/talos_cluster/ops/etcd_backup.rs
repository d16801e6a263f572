//! etcd snapshots to a local directory and the declarative restore (see `../etcd.rs`).
//!
//! A snapshot is streamed from the first control plane (configuration order) whose etcd
//! service runs healthy, into `.<name>.partial` in the directory, its integrity hash checked
//! as it arrives ([`waddle_talos::api::etcd::SnapshotVerifier`]); only a verified snapshot is
//! synced and renamed to its final name, with `<name>.sha256` beside it. A restore reads and
//! verifies the file first, checks that no control plane's etcd runs (a lost etcd waits for a
//! bootstrap on every control plane), uploads it with `EtcdRecover` and calls `Bootstrap`
//! with `recover_etcd` on the first control plane, then waits for its etcd to run (a restore
//! that fails on the node shows as the etcd service `Failed`, with Talos's reason).

use super::OpError;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt as _;
use waddle_framework::error_chain;
use waddle_talos::api::etcd::{SnapshotError, SnapshotInfo, SnapshotVerifier};
use waddle_talos::api::SnapshotTransferError;

use super::super::etcd::{RestoreModel, SnapshotRecord};
use super::{control_planes, Attempt, ClusterModel, Env, R};
use crate::resources::talos_cluster::node_ip;

/// The largest snapshot file a restore reads (etcd's largest storage quota is 8 GiB).
pub const MAX_SNAPSHOT_FILE: u64 = 8 << 30;

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// It could not be inspected or read.
    #[error("reading {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file.
    #[error("{path:?} is not a regular file")]
    NotAFile { path: String },
    /// Larger than [`MAX_SNAPSHOT_FILE`].
    #[error("{path:?} is larger than {MAX_SNAPSHOT_FILE} bytes, too large for an etcd snapshot")]
    TooLarge { path: String },
    /// Not a valid snapshot.
    #[error("{path:?}: {source}")]
    Invalid {
        path: String,
        #[source]
        source: SnapshotError,
    },
}

/// Reads and verifies a snapshot file (a regular file; its type checked before it is opened,
/// so a FIFO never blocks).
pub fn read_snapshot_file(path: &str) -> Result<(Vec<u8>, SnapshotInfo), SnapshotFileError> {
    let io = |source| SnapshotFileError::Io {
        path: path.to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(SnapshotFileError::NotAFile {
            path: path.to_string(),
        });
    }
    if meta.len() > MAX_SNAPSHOT_FILE {
        return Err(SnapshotFileError::TooLarge {
            path: path.to_string(),
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    file.take(MAX_SNAPSHOT_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    let mut v = SnapshotVerifier::new();
    v.update(&buf);
    let info = v.finish().map_err(|source| SnapshotFileError::Invalid {
        path: path.to_string(),
        source,
    })?;
    Ok((buf, info))
}

/// `20261203T134056.123Z`: sortable, unique per millisecond.
fn stamp(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn file_prefix(cluster: &str) -> String {
    format!("{cluster}-etcd-")
}

/// The environment for snapshot transfers: no per-call time limit (a large snapshot takes as
/// long as it takes), only the operation's deadline.
fn streaming(env: &Env) -> Env {
    let mut e = env.clone();
    e.connect.request_timeout = None;
    e
}

/// Control planes (configuration order) whose etcd service runs healthy: (name, ip).
async fn healthy_control_planes(env: &Env, m: &ClusterModel) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, n) in control_planes(m) {
        let ip = node_ip(&n).to_string();
        let Ok(c) = env.mtls(&ip).await else { continue };
        let Ok(services) = c.services().await else {
            continue;
        };
        if services
            .iter()
            .any(|s| s.id == "etcd" && s.state == "Running" && s.healthy != Some(false))
        {
            out.push((name, ip));
        }
    }
    out
}

/// Takes a snapshot into `etcd_backup.directory` and prunes the directory to `keep`;
/// records the kept snapshots in `m.etcd_snapshots`. Returns the new record.
pub async fn take(env: &Env, m: &mut ClusterModel, reason: &str) -> R<SnapshotRecord> {
    let env = &streaming(env);
    let backup = m
        .etcd_backup
        .clone()
        .ok_or("etcd_backup is not configured")?;
    let dir = PathBuf::from(&backup.directory);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        OpError::Step(format!(
            "etcd snapshot: creating {:?}: {e}",
            backup.directory
        ))
    })?;
    let what = format!("etcd snapshot ({reason})");
    let (node, info, path) = env
        .retry(&what, || {
            let dir = dir.clone();
            let m = &*m;
            async move {
                let cps = healthy_control_planes(env, m).await;
                let Some((node, ip)) = cps.first().cloned() else {
                    return Attempt::Again(
                        "no control plane's etcd service is running healthy".into(),
                    );
                };
                match snapshot_from(env, &dir, &m.cluster_name, reason, &ip).await {
                    Ok((info, path)) => Attempt::Done((node, info, path)),
                    Err(SnapshotTransferError::Api(e)) if e.is_transient() => {
                        Attempt::Again(format!("nodes[{node:?}]: {}", error_chain(&e)))
                    }
                    Err(e) => Attempt::Fatal(format!("nodes[{node:?}]: {}", error_chain(&e))),
                }
            }
        })
        .await?;
    let record = SnapshotRecord {
        path: path.to_string_lossy().into_owned(),
        sha256: info.sha256,
        size: info.size,
        reason: reason.to_string(),
        node,
        taken_at: time::OffsetDateTime::now_utc()
            .replace_millisecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
    };
    tracing::info!(
        path = record.path,
        size = record.size,
        node = record.node,
        reason,
        "etcd snapshot written"
    );
    let mut kept = m.etcd_snapshots.clone().unwrap_or_default();
    kept.push(record.clone());
    let removed = prune(&dir, &m.cluster_name, backup.keep() as usize).map_err(|e| {
        OpError::Step(format!(
            "etcd snapshot: pruning {:?}: {e}",
            backup.directory
        ))
    })?;
    kept.retain(|r| {
        Path::new(&r.path).is_file() && !removed.iter().any(|p| *p == Path::new(&r.path))
    });
    m.etcd_snapshots = Some(kept);
    Ok(record)
}

/// Streams one snapshot from `ip` to `dir`; the final path once verified.
async fn snapshot_from(
    env: &Env,
    dir: &Path,
    cluster: &str,
    reason: &str,
    ip: &str,
) -> Result<(SnapshotInfo, PathBuf), SnapshotTransferError> {
    let name = format!(
        "{}{}-{reason}.db",
        file_prefix(cluster),
        stamp(time::OffsetDateTime::now_utc())
    );
    let partial = dir.join(format!(".{name}.partial"));
    let done = dir.join(&name);
    let c = env.mtls(ip).await?;
    let mut f = tokio::fs::File::create(&partial).await?;
    let r = c.etcd_snapshot(&mut f).await;
    let r = match r {
        Ok(info) => f.sync_all().await.map(|()| info).map_err(Into::into),
        Err(e) => Err(e),
    };
    drop(f);
    let info = match r {
        Ok(i) => i,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&partial, &done).await?;
    let mut sum = tokio::fs::File::create(dir.join(format!("{name}.sha256"))).await?;
    sum.write_all(format!("{}  {name}\n", info.sha256).as_bytes())
        .await?;
    sum.sync_all().await?;
    Ok((info, done))
}

/// Deletes all but the newest `keep` snapshots of `cluster` in `dir` (and their `.sha256`);
/// returns the deleted snapshot paths.
fn prune(dir: &Path, cluster: &str, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let prefix = file_prefix(cluster);
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".db"))
        })
        .collect();
    snaps.sort();
    let excess = snaps.len().saturating_sub(keep);
    let old: Vec<PathBuf> = snaps.into_iter().take(excess).collect();
    for p in &old {
        std::fs::remove_file(p)?;
        let mut sum = p.clone().into_os_string();
        sum.push(".sha256");
        match std::fs::remove_file(&sum) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(old)
}

/// Recovers the cluster's lost etcd from `r.snapshot` (see the module docs).
pub async fn restore(env: &Env, m: &ClusterModel, r: &RestoreModel) -> R<()> {
    let env = &streaming(env);
    let (bytes, info) =
        read_snapshot_file(&r.snapshot).map_err(|e| OpError::Step(format!("etcd_restore: {e}")))?;
    let cps = control_planes(m);
    let Some((first, first_node)) = cps.first().cloned() else {
        return Err("etcd_restore: no control plane".into());
    };
    // etcd must be lost on every control plane: each one answers, none runs etcd.
    let running = env
        .retry("etcd_restore: checking that etcd is lost", || async {
            let mut running = Vec::new();
            for (name, n) in &cps {
                let c = match env.mtls(node_ip(n)).await {
                    Ok(c) => c,
                    Err(e) => return Attempt::Again(format!("nodes[{name:?}]: {e}")),
                };
                match c.services().await {
                    Ok(s) => {
                        if s.iter().any(|s| s.id == "etcd" && s.state == "Running") {
                            running.push(name.clone());
                        }
                    }
                    Err(e) => return Attempt::Again(format!("nodes[{name:?}]: {e}")),
                }
            }
            Attempt::Done(running)
        })
        .await?;
    if !running.is_empty() {
        return Err(OpError::Step(format!(
            "etcd_restore: etcd is running on {}: a restore recovers only a cluster whose etcd \
             is lost (every control plane's etcd waiting for a bootstrap) and never overwrites \
             a running etcd; set etcd_restore.generation back to the last applied value to \
             keep this cluster's data",
            running
                .iter()
                .map(|n| format!("nodes[{n:?}]"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let ip = node_ip(&first_node).to_string();
    tracing::info!(
        node = first,
        size = info.size,
        sha256 = info.sha256,
        "uploading the etcd snapshot"
    );
    env.retry(&format!("nodes[{first:?}]: EtcdRecover"), || async {
        let c = match env.mtls(&ip).await {
            Ok(c) => c,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        match c.etcd_recover(&bytes).await {
            Ok(()) => Attempt::Done(()),
            Err(e) if e.is_failed_precondition() || e.is_transient() => {
                Attempt::Again(e.to_string())
            }
            Err(e) => Attempt::Fatal(e.to_string()),
        }
    })
    .await?;
    env.retry(
        &format!("nodes[{first:?}]: Bootstrap with recover_etcd"),
        || async {
            let c = match env.mtls(&ip).await {
                Ok(c) => c,
                Err(e) => return Attempt::Again(e.to_string()),
            };
            match c.bootstrap_recover().await {
                Ok(()) => Attempt::Done(()),
                Err(e) if e.is_failed_precondition() || e.is_transient() => {
                    Attempt::Again(e.to_string())
                }
                Err(e) => Attempt::Fatal(e.to_string()),
            }
        },
    )
    .await?;
    env.retry(
        &format!("nodes[{first:?}]: etcd restored from the snapshot"),
        || async {
            let c = match env.mtls(&ip).await {
                Ok(c) => c,
                Err(e) => return Attempt::Again(e.to_string()),
            };
            match c.services().await {
                Ok(s) => match s.iter().find(|s| s.id == "etcd") {
                    Some(e) if e.state == "Running" => Attempt::Done(()),
                    Some(e) if e.state == "Failed" => Attempt::Fatal(format!(
                        "the etcd service failed: {} (snapshot {:?})",
                        e.message, r.snapshot
                    )),
                    Some(e) => Attempt::Again(format!("etcd service {}: {}", e.state, e.message)),
                    None => Attempt::Again("no etcd service yet".into()),
                },
                Err(e) => Attempt::Again(e.to_string()),
            }
        },
    )
    .await?;
    tracing::info!(node = first, snapshot = r.snapshot, "etcd restored");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Vec<u8> {
        use sha2::Digest as _;
        let mut db = vec![7u8; 1024];
        let h = sha2::Sha256::digest(&db);
        db.extend_from_slice(&h);
        db
    }

    #[test]
    fn a_snapshot_file_is_verified_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let good = dir.path().join("good.db");
        std::fs::write(&good, snapshot()).expect("write");
        let (bytes, info) = read_snapshot_file(good.to_str().expect("utf-8")).expect("valid");
        assert_eq!(bytes.len(), 1056);
        assert_eq!(info.size, 1056);
        let mut bad = snapshot();
        bad[5] = 0;
        let badp = dir.path().join("bad.db");
        std::fs::write(&badp, bad).expect("write");
        let e = read_snapshot_file(badp.to_str().expect("utf-8")).unwrap_err();
        assert!(
            e.to_string().contains("integrity hash does not match"),
            "{e}"
        );
        let e = read_snapshot_file(dir.path().to_str().expect("utf-8")).unwrap_err();
        assert!(matches!(e, SnapshotFileError::NotAFile { .. }), "{e}");
        let e = read_snapshot_file("/nonexistent/x.db").unwrap_err();
        assert!(matches!(e, SnapshotFileError::Io { .. }), "{e}");
    }

    #[test]
    fn prune_keeps_the_newest_of_this_cluster_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let names = [
            "c-etcd-20260101T000000.000Z-every_apply.db",
            "c-etcd-20260102T000000.000Z-every_apply.db",
            "c-etcd-20260103T000000.000Z-before_upgrade.db",
            "other-etcd-20250101T000000.000Z-every_apply.db",
            "c-notes.txt",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").expect("write");
            std::fs::write(dir.path().join(format!("{n}.sha256")), b"x").expect("write");
        }
        let removed = prune(dir.path(), "c", 2).expect("prune");
        assert_eq!(removed, vec![dir.path().join(names[0])]);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".sha256"))
            .collect();
        left.sort();
        assert_eq!(left, [names[1], names[2], names[4], names[3]]);
        assert!(!dir.path().join(format!("{}.sha256", names[0])).exists());
    }

    #[test]
    fn stamps_sort_in_time_order() {
        let a = time::macros::datetime!(2026-01-02 03:04:05.006 UTC);
        let b = time::macros::datetime!(2026-01-02 03:04:05.007 UTC);
        assert_eq!(stamp(a), "20260102T030405.006Z");
        assert!(stamp(a) < stamp(b));
    }
}
