//! The gRPC intake and the Kafka REST bridge.
//!
//! * [`service::GrpcIntake`] serves `bandvote.v1.VoteService` (unary `Cast`,
//!   client-streaming `CastBatch`) and the legacy `confproto.getInfo` as a thin
//!   adapter onto the same path: validation by `bandvote-vote`, publishing by
//!   `bandvote-kafka`, OK only after Kafka's acks=all delivery report.
//! * [`rest`] implements the subset of the Kafka REST Proxy v2 API that the
//!   Spin adapter component speaks (`POST /topics/{topic}`).
//! * [`hop`] is the gRPC *client* hop (`bandvote-grpc-client`): HTTP JSON
//!   votes on `/grpc` turned into calls to this service, as the original
//!   system's ingress did.

pub mod config;
pub mod hop;
pub mod metrics;
pub mod rest;
pub mod service;

/// Generated tonic code.
pub mod proto {
    pub mod bandvote {
        tonic::include_proto!("bandvote.v1");
    }
    pub mod confproto {
        tonic::include_proto!("confproto");
    }
    /// Descriptor set for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("bandvote_descriptor");
}
