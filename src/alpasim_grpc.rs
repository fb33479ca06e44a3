//! AlpaSim's gRPC contract for external drivers (`proto/alpasim_grpc/v0`, see proto/README.md),
//! compiled by `build.rs`: the messages and the `egodriver.EgodriverService` client.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `common` package: geometry and status messages.
pub mod common {
    tonic::include_proto!("common");
}

/// `egodriver` package: the driver service.
pub mod egodriver {
    tonic::include_proto!("egodriver");
}

/// `nre.grpc.protos.sensorsim` package (the camera description only).
pub mod nre {
    /// nre.grpc
    pub mod grpc {
        /// nre.grpc.protos
        pub mod protos {
            /// nre.grpc.protos.sensorsim
            pub mod sensorsim {
                tonic::include_proto!("nre.grpc.protos.sensorsim");
            }
        }
    }
}
