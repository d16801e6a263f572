//! Wire facts of the Talos upgrade APIs (siderolabs/talos api/machine/machine.proto at
//! v1.12: `UpgradeRequest`; api/machine/image.proto and lifecycle.proto at v1.13:
//! `ImageServicePullRequest`, `LifecycleServiceUpgradeRequest`; api/common/common.proto:
//! `ContainerdInstance`), checked on the encoded bytes.

use prost::Message as _;
use waddle_talos::api::proto::common::{ContainerDriver, ContainerdInstance, ContainerdNamespace};
use waddle_talos::api::proto::machine as pm;

#[test]
fn upgrade_request_fields() {
    assert_eq!(
        [
            pm::upgrade_request::RebootMode::Default,
            pm::upgrade_request::RebootMode::Powercycle
        ]
        .map(|m| m as i32),
        [0, 1]
    );
    let r = pm::UpgradeRequest {
        image: "i".into(),
        preserve: true,
        stage: true,
        force: true,
        reboot_mode: 1,
    };
    // image=1 (len), preserve=2, stage=3, force=4, reboot_mode=5 (varints).
    assert_eq!(
        r.encode_to_vec(),
        [0x0a, 1, b'i', 0x10, 1, 0x18, 1, 0x20, 1, 0x28, 1]
    );
    let u = pm::Upgrade {
        metadata: None,
        ack: "a".into(),
        actor_id: "x".into(),
    };
    // ack=2, actor_id=3.
    assert_eq!(u.encode_to_vec(), [0x12, 1, b'a', 0x1a, 1, b'x']);
}

#[test]
fn image_and_lifecycle_fields() {
    assert_eq!(
        [
            ContainerDriver::Containerd as i32,
            ContainerDriver::Cri as i32
        ],
        [0, 1]
    );
    assert_eq!(
        [
            ContainerdNamespace::NsUnknown as i32,
            ContainerdNamespace::NsSystem as i32,
            ContainerdNamespace::NsCri as i32
        ],
        [0, 1, 2]
    );
    let ci = ContainerdInstance {
        driver: 1,
        namespace: 1,
    };
    // driver=1, namespace=2.
    assert_eq!(ci.encode_to_vec(), [0x08, 1, 0x10, 1]);
    let pull = pm::ImageServicePullRequest {
        containerd: Some(ci),
        image_ref: "r".into(),
    };
    // containerd=1 (len), image_ref=3 (field 2 unused).
    assert_eq!(
        pull.encode_to_vec(),
        [0x0a, 4, 0x08, 1, 0x10, 1, 0x1a, 1, b'r']
    );
    let done = pm::ImageServicePullResponse {
        response: Some(pm::image_service_pull_response::Response::Name("n".into())),
    };
    assert_eq!(done.encode_to_vec(), [0x0a, 1, b'n']);
    let up = pm::LifecycleServiceUpgradeRequest {
        containerd: None,
        source: Some(pm::InstallArtifactsSource {
            image_name: "n".into(),
        }),
    };
    // source=2 { image_name=1 }.
    assert_eq!(up.encode_to_vec(), [0x12, 3, 0x0a, 1, b'n']);
    let exit = pm::LifecycleServiceUpgradeResponse {
        progress: Some(pm::LifecycleServiceInstallProgress {
            response: Some(pm::lifecycle_service_install_progress::Response::ExitCode(
                3,
            )),
        }),
    };
    // progress=1 { exit_code=2 }.
    assert_eq!(exit.encode_to_vec(), [0x0a, 2, 0x10, 3]);
}
