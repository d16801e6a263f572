//! Wire facts of Talos's etcd snapshot/recovery API (siderolabs/talos api/machine/machine.proto:
//! `BootstrapRequest`, `EtcdSnapshotRequest`, `EtcdRecover`, `EtcdRecoverResponse`), checked
//! on the encoded bytes, and the gRPC paths the generated client calls.

use prost::Message as _;
use waddle_talos::api::proto::common::{Data, Metadata};
use waddle_talos::api::proto::machine as pm;

#[test]
fn etcd_recovery_messages_match_talos() {
    // recover_etcd=1, recover_skip_hash_check=2 (varints).
    let b = pm::BootstrapRequest {
        recover_etcd: true,
        recover_skip_hash_check: true,
    };
    assert_eq!(b.encode_to_vec(), [0x08, 1, 0x10, 1]);
    assert!(pm::EtcdSnapshotRequest {}.encode_to_vec().is_empty());
    // EtcdRecoverResponse.messages=1 { EtcdRecover.metadata=1 { hostname=1 } }.
    let r = pm::EtcdRecoverResponse {
        messages: vec![pm::EtcdRecover {
            metadata: Some(Metadata {
                hostname: "h".into(),
                error: String::new(),
                status: None,
            }),
        }],
    };
    assert_eq!(r.encode_to_vec(), [0x0a, 5, 0x0a, 3, 0x0a, 1, b'h']);
    // The upload is a stream of common.Data (bytes=2).
    let d = Data {
        metadata: None,
        bytes: vec![1, 2],
    };
    assert_eq!(d.encode_to_vec(), [0x12, 2, 1, 2]);
}

#[test]
fn etcd_recovery_rpcs_have_talos_paths() {
    // Cargo sets OUT_DIR for every target of a package with a build script.
    let generated = std::fs::read_to_string(concat!(env!("OUT_DIR"), "/machine.rs"))
        .expect("the generated machine.rs");
    assert!(generated.contains("\"/machine.MachineService/EtcdSnapshot\""));
    assert!(generated.contains("\"/machine.MachineService/EtcdRecover\""));
}
