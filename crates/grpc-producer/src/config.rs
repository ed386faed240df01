//! gRPC producer configuration: flags with env vars and defaults.

use std::net::SocketAddr;

use bandvote_admission::AdmissionArgs;
use bandvote_kafka::PublisherArgs;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bandvote-grpc", about = "gRPC vote intake and Kafka REST bridge, publishing to Kafka")]
pub struct GrpcConfig {
    /// gRPC listen address (bandvote.v1.VoteService, confproto.getInfo, health, reflection).
    #[arg(long, env = "BANDVOTE_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Kafka REST Proxy v2 bridge listen address (for the Spin adapter).
    #[arg(long, env = "BANDVOTE_REST_LISTEN", default_value = "127.0.0.1:8082")]
    pub rest_listen: SocketAddr,
    /// Address for /metrics, /healthz, /readyz.
    #[arg(long, env = "BANDVOTE_GRPC_ADMIN_LISTEN", default_value = "127.0.0.1:9182")]
    pub admin_listen: SocketAddr,
    /// Field layout of `confproto.getInfo/returnInfo` votes: `course` (the
    /// course's proto: album = 1, year = 2, artist = 3, ranked = 4) or
    /// `student` (name = 1, album = 2, year = 3, rank = 4, as most student
    /// clients have it). The wire cannot tell them apart: pick your clients'.
    #[arg(long, env = "BANDVOTE_GETINFO_LAYOUT", default_value = "course")]
    pub getinfo_layout: bandvote_vote::pb::GetInfoLayout,
    #[command(flatten)]
    pub kafka: PublisherArgs,
    #[command(flatten)]
    pub admission: AdmissionArgs,
}
