//! etcd snapshots and recovery: `EtcdSnapshot` (a byte stream from a control plane's local
//! etcd), `EtcdRecover` (uploads a snapshot to a control plane) and `Bootstrap` with
//! `recover_etcd` (the node restores etcd from the uploaded snapshot and starts a one-member
//! cluster from it).
//!
//! An etcd snapshot (what etcd's `Maintenance.Snapshot` streams and Talos forwards) is the
//! bbolt database, a whole number of 512-byte pages, followed by the 32-byte SHA-256 of
//! everything before it; `etcdutl snapshot restore` checks that hash (Talos skips the check
//! only with `recover_skip_hash_check`). [`SnapshotVerifier`] checks it as the bytes arrive,
//! so a snapshot cut short or damaged on the way is refused before it is kept.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use super::proto::common::Data;
use super::proto::machine as pm;
use super::{TalosClient, TalosError};

/// Length of the integrity hash at the end of an etcd snapshot.
pub const SNAPSHOT_HASH_LEN: usize = 32;
/// The page size a snapshot's database is a multiple of.
pub const SNAPSHOT_PAGE: u64 = 512;
/// Chunk size of an upload (Talos's own chunker uses 4 KiB; larger chunks are fine).
const UPLOAD_CHUNK: usize = 64 * 1024;

/// A verified snapshot: its size and the SHA-256 of the whole file (what `sha256sum`
/// prints for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
}

/// Why bytes are not a usable etcd snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not `n * 512 + 32` bytes: no integrity hash, or cut short.
    #[error(
        "{size} bytes is not the size of an etcd snapshot (a database of 512-byte pages followed \
         by its 32-byte SHA-256): the file is truncated or not an etcd snapshot"
    )]
    Shape {
        /// Bytes seen.
        size: u64,
    },
    /// The trailing hash does not match the database.
    #[error(
        "the snapshot's integrity hash does not match its contents (recorded {recorded}, \
         computed {computed}): the file is damaged"
    )]
    Hash {
        /// The hash at the end of the file.
        recorded: String,
        /// The hash of the database part.
        computed: String,
    },
}

/// Checks an etcd snapshot incrementally: feed it every byte in order, then [`Self::finish`].
#[derive(Clone, Default)]
pub struct SnapshotVerifier {
    body: Sha256,
    file: Sha256,
    tail: Vec<u8>,
    size: u64,
}

impl SnapshotVerifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next bytes of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.file.update(chunk);
        self.size += chunk.len() as u64;
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > SNAPSHOT_HASH_LEN {
            let cut = self.tail.len() - SNAPSHOT_HASH_LEN;
            self.body.update(&self.tail[..cut]);
            self.tail.drain(..cut);
        }
    }

    /// The verdict on everything fed.
    pub fn finish(self) -> Result<SnapshotInfo, SnapshotError> {
        if self.size < SNAPSHOT_HASH_LEN as u64
            || !(self.size - SNAPSHOT_HASH_LEN as u64).is_multiple_of(SNAPSHOT_PAGE)
        {
            return Err(SnapshotError::Shape { size: self.size });
        }
        let computed = self.body.finalize();
        if computed[..] != self.tail[..] {
            return Err(SnapshotError::Hash {
                recorded: hex_of(&self.tail),
                computed: hex_of(&computed),
            });
        }
        Ok(SnapshotInfo {
            size: self.size,
            sha256: hex_of(&self.file.finalize()),
        })
    }
}

/// Verifies a whole snapshot held in memory.
pub fn verify_snapshot(bytes: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
    let mut v = SnapshotVerifier::new();
    v.update(bytes);
    v.finish()
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Why a snapshot was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotTransferError {
    /// The Talos API call failed.
    #[error(transparent)]
    Api(#[from] TalosError),
    /// Writing the bytes to the destination failed.
    #[error("writing the snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes received are not a valid snapshot.
    #[error("the snapshot streamed by {endpoint} is not valid: {source}")]
    Invalid {
        /// The node.
        endpoint: std::net::SocketAddr,
        /// What is wrong.
        #[source]
        source: SnapshotError,
    },
}

impl TalosClient {
    /// Streams a snapshot of this control plane's etcd into `out` (flushed at the end) and
    /// verifies its integrity hash on the way. `out` holds every byte received even when the
    /// verdict is an error: the caller decides what to keep.
    pub async fn etcd_snapshot<W>(&self, out: &mut W) -> Result<SnapshotInfo, SnapshotTransferError>
    where
        W: AsyncWrite + Unpin + Send,
    {
        const M: &str = "EtcdSnapshot";
        let mut c = self.inner.clone();
        let endpoint = self.endpoint;
        let r = self
            .run(M, async {
                let mut s = c
                    .etcd_snapshot(pm::EtcdSnapshotRequest {})
                    .await
                    .map_err(self.rpc(M))?
                    .into_inner();
                let mut v = SnapshotVerifier::new();
                let inner = async {
                    while let Some(bytes) = self.next_chunk(M, &mut s).await? {
                        v.update(&bytes);
                        out.write_all(&bytes).await?;
                    }
                    out.flush().await?;
                    Ok::<_, SnapshotTransferError>(())
                }
                .await;
                Ok(inner.map(|()| v))
            })
            .await?;
        r?.finish()
            .map_err(|source| SnapshotTransferError::Invalid { endpoint, source })
    }

    /// Uploads `snapshot` to this control plane for a later [`Self::bootstrap_recover`].
    /// `FailedPrecondition` while the node's etcd service cannot take it yet (retry).
    pub async fn etcd_recover(&self, snapshot: &[u8]) -> Result<(), TalosError> {
        const M: &str = "EtcdRecover";
        let chunks: Vec<Data> = snapshot
            .chunks(UPLOAD_CHUNK)
            .map(|b| Data {
                metadata: None,
                bytes: b.to_vec(),
            })
            .collect();
        self.acknowledged(M, |mut c| async move {
            c.etcd_recover(tokio_stream::iter(chunks)).await
        })
        .await
    }

    /// `Bootstrap` with `recover_etcd`: etcd is restored from the snapshot uploaded with
    /// [`Self::etcd_recover`] (its hash checked) and started as a one-member cluster.
    /// `AlreadyExists` when this node's etcd has data.
    pub async fn bootstrap_recover(&self) -> Result<(), TalosError> {
        self.acknowledged("Bootstrap", |mut c| async move {
            c.bootstrap(pm::BootstrapRequest {
                recover_etcd: true,
                recover_skip_hash_check: false,
            })
            .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(db_pages: usize) -> Vec<u8> {
        let mut db: Vec<u8> = (0..db_pages * 512).map(|i| (i % 251) as u8).collect();
        let h = Sha256::digest(&db);
        db.extend_from_slice(&h);
        db
    }

    #[test]
    fn a_whole_snapshot_verifies_in_any_chunking() {
        let s = snapshot(3);
        let whole = verify_snapshot(&s).expect("valid");
        assert_eq!(whole.size, 3 * 512 + 32);
        assert_eq!(whole.sha256, hex_of(&Sha256::digest(&s)));
        for chunk in [1, 7, 31, 32, 33, 511, 4096] {
            let mut v = SnapshotVerifier::new();
            for c in s.chunks(chunk) {
                v.update(c);
            }
            assert_eq!(v.finish().as_ref(), Ok(&whole), "chunk {chunk}");
        }
    }

    #[test]
    fn truncated_or_damaged_snapshots_are_refused() {
        let s = snapshot(2);
        assert_eq!(
            verify_snapshot(&s[..s.len() - 1]),
            Err(SnapshotError::Shape {
                size: s.len() as u64 - 1
            })
        );
        assert!(matches!(
            verify_snapshot(&s[..10]),
            Err(SnapshotError::Shape { size: 10 })
        ));
        let mut bad = s.clone();
        bad[100] ^= 1;
        assert!(matches!(
            verify_snapshot(&bad),
            Err(SnapshotError::Hash { .. })
        ));
        let mut bad_hash = s;
        let n = bad_hash.len();
        bad_hash[n - 1] ^= 0x80;
        assert!(matches!(
            verify_snapshot(&bad_hash),
            Err(SnapshotError::Hash { .. })
        ));
    }
}
