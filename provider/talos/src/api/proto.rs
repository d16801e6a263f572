//! Generated code for waddle's minimal Talos API protos (`proto/talos`): client and server
//! for `machine.MachineService`, the `common` messages and `google.rpc.Status`.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `common`.
pub mod common {
    tonic::include_proto!("common");
}

/// Package `machine`.
pub mod machine {
    tonic::include_proto!("machine");
}

/// Package `google.rpc`.
pub mod google {
    /// Package `google.rpc`.
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
