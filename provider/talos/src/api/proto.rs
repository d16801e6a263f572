//! Generated code for waddle's minimal Talos API protos (`proto/talos`): client and server
//! for `machine.MachineService` and `cosi.resource.State` (Get), the `common` messages,
//! `google.rpc.Status` and the `MachineStatus` resource spec.
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

/// Package `cosi.resource` (COSI runtime resource API: `State.Get`).
pub mod cosi {
    /// Package `cosi.resource`.
    pub mod resource {
        tonic::include_proto!("cosi.resource");
    }
}

/// Packages `talos.resource.definitions.*` (resource specs carried in `proto_spec`).
pub mod talos {
    /// Package `talos.resource`.
    pub mod resource {
        /// Package `talos.resource.definitions`.
        pub mod definitions {
            /// Package `talos.resource.definitions.enums`.
            pub mod enums {
                tonic::include_proto!("talos.resource.definitions.enums");
            }
            /// Package `talos.resource.definitions.runtime`.
            pub mod runtime {
                tonic::include_proto!("talos.resource.definitions.runtime");
            }
        }
    }
}

/// The `prost` runtime of the generated types (to encode resource specs carried as bytes in
/// `cosi.resource.Spec.proto_spec`).
pub use prost;
