//! `EtcdSnapshot`, `EtcdRecover` and the restore behind `Bootstrap` with `recover_etcd`.
//!
//! * `EtcdSnapshot` (control planes whose etcd runs): the cluster's etcd data as a snapshot
//!   ([`crate::talos::etcd_data::EtcdData::snapshot`]: pages + SHA-256), streamed in chunks.
//! * `EtcdRecover` (control planes): the uploaded bytes are kept on the node as Talos keeps
//!   `/var/lib/etcd.snapshot`, whatever they are; nothing is checked yet.
//! * `Bootstrap{recover_etcd}` restores from them: a missing, damaged or foreign snapshot
//!   makes the node's etcd service fail (reported by `ServiceList`), as on a real node where
//!   the call itself succeeds and etcd then fails to start; on success the file is removed.

use tokio_stream::StreamExt as _;
use tonic::codegen::BoxStream;
use tonic::Status;

use waddle_talos::api::proto::common::Data;
use waddle_talos::api::proto::machine as pm;

use super::super::etcd_data::EtcdData;
use super::{data_stream, lock, NodeService};

/// The largest snapshot an upload may be (a real etcd's default quota is 2 GiB; tests
/// upload KiBs).
const MAX_UPLOAD: usize = 256 << 20;

impl NodeService {
    pub(super) fn snapshot_inner(&self) -> Result<BoxStream<Data>, Status> {
        let (cfg, _) = self.member_of()?;
        let fleet = self
            .node
            .fleet()
            .ok_or_else(|| Status::unavailable("fleet gone"))?;
        let bytes = lock(&fleet.clusters)
            .get(&cfg.cluster_id)
            .map(|c| c.data.snapshot(&cfg.cluster_id))
            .ok_or_else(|| Status::failed_precondition("etcd is not running on this node"))?;
        Ok(data_stream(bytes, None))
    }

    pub(super) async fn recover_inner(
        &self,
        mut stream: tonic::Streaming<Data>,
    ) -> Result<pm::EtcdRecoverResponse, Status> {
        self.maintenance_only_unimplemented()?;
        let cfg = self.config()?;
        if !cfg.control_plane {
            return Err(Status::failed_precondition(
                "etcd recover is only supported on control plane nodes",
            ));
        }
        let mut buf = Vec::new();
        while let Some(item) = stream.next().await {
            let d = item?;
            if buf.len() + d.bytes.len() > MAX_UPLOAD {
                return Err(Status::resource_exhausted(
                    "error writing snapshot: no space left on device",
                ));
            }
            buf.extend_from_slice(&d.bytes);
        }
        lock(&self.node.inner.state).recovery_snapshot = Some(buf);
        Ok(pm::EtcdRecoverResponse {
            messages: vec![pm::EtcdRecover {
                metadata: self.md(),
            }],
        })
    }

    /// The data a recovery starts from: the uploaded snapshot, restored.
    pub(super) fn recovered_data(&self, skip_hash_check: bool) -> Result<EtcdData, String> {
        let mut st = lock(&self.node.inner.state);
        let Some(bytes) = st.recovery_snapshot.as_ref() else {
            return Err(
                "error verifying snapshot: stat /var/lib/etcd.snapshot: no such file or directory"
                    .into(),
            );
        };
        let data = EtcdData::restore(bytes, skip_hash_check)
            .map_err(|e| format!("error recovering from the snapshot: {e}"))?;
        st.recovery_snapshot = None;
        Ok(data)
    }
}
