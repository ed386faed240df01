//! Host configuration: flags, each with an environment variable and a default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bandvote_admission::AdmissionArgs;
use bandvote_kafka::PublisherArgs;

use crate::runtime::RuntimeConfig;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "bandvote-host", about = "Serve the bandvote HTTP intake component on wasmtime, publishing votes to Kafka")]
pub struct HostConfig {
    /// Address for the vote intake (HTTP/1.1).
    #[arg(long, env = "BANDVOTE_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, env = "BANDVOTE_HOST_ADMIN_LISTEN", default_value = "127.0.0.1:9180")]
    pub admin_listen: SocketAddr,
    /// The intake component (wasm32-wasip2), built by scripts/build-wasm.sh.
    #[arg(long, env = "BANDVOTE_INTAKE_WASM")]
    pub component: PathBuf,
    #[command(flatten)]
    pub kafka: PublisherArgs,
    #[command(flatten)]
    pub admission: AdmissionArgs,
    /// Requests (component instances) running at once; past it a request waits
    /// up to --slot-wait-ms for a slot, then 503 + Retry-After.
    #[arg(long, env = "BANDVOTE_MAX_CONCURRENT", default_value_t = 512)]
    pub max_concurrent: u32,
    /// Longest wait for a free instance slot, in milliseconds (bursts queue instead of 503).
    #[arg(long, env = "BANDVOTE_SLOT_WAIT_MS", default_value_t = 1_000)]
    pub slot_wait_ms: u64,
    /// Longest time to receive a request body, in milliseconds; read in full
    /// before the request takes an instance slot (slow senders get 408).
    #[arg(long, env = "BANDVOTE_BODY_TIMEOUT_MS", default_value_t = 5_000)]
    pub body_timeout_ms: u64,
    /// Deadline for one request, in milliseconds (epoch interruption + timer).
    #[arg(long, env = "BANDVOTE_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Open client connections at once; past it new ones are closed at once.
    #[arg(long, env = "BANDVOTE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Linear memory limit per instance, in MiB.
    #[arg(long, env = "BANDVOTE_INSTANCE_MEMORY_MIB", default_value_t = 32)]
    pub instance_memory_mib: usize,
    /// Write /tmp/perf-<pid>.map so `perf report` names the component's
    /// functions (profiling; names need a component built with them:
    /// `BANDVOTE_WASM_PROFILE=wasm-profiling scripts/build-wasm.sh`).
    /// The variable takes 1/0, true/false, yes/no, on/off.
    #[arg(long, env = "BANDVOTE_GUEST_PERF_MAP", default_value_t = false, value_parser = clap::builder::BoolishValueParser::new())]
    pub guest_perf_map: bool,
    /// Directory that keeps the compiled component across restarts (unset:
    /// compile at every start, ~0.6 s here).
    #[arg(long, env = "BANDVOTE_COMPILE_CACHE")]
    pub compile_cache: Option<PathBuf>,
    /// Requests one component instance serves, one after another (1: a fresh
    /// instance per request). An instance is never reused after a trap, a
    /// missed deadline, a leftover host resource or a heap grown past half
    /// the instance memory. 64: the smallest N that took the whole gain in
    /// the bench's reuse phase (bench/results.md: 1, 8, 64 and 1,024 side by
    /// side; past 64 the CPU per request no longer falls).
    #[arg(long, env = "BANDVOTE_INSTANCE_REUSE", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub instance_reuse: u32,
    /// An idle reusable instance unused this long, in milliseconds, is dropped.
    #[arg(long, env = "BANDVOTE_INSTANCE_IDLE_MS", default_value_t = 10_000)]
    pub instance_idle_ms: u64,
    /// The host answers for the component: an instance hands its votes over
    /// and ends, the host publishes them and replies once Kafka answers (the
    /// same reply). `false`: each instance waits for Kafka and answers itself,
    /// as under Spin.
    #[arg(long, env = "BANDVOTE_HOST_REPLIES", default_value_t = true, action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub host_replies: bool,
}

impl HostConfig {
    /// The runtime these flags describe.
    pub fn runtime_config(&self) -> RuntimeConfig {
        RuntimeConfig {
            max_concurrent: self.max_concurrent,
            slot_wait: Duration::from_millis(self.slot_wait_ms),
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            body_timeout: Duration::from_millis(self.body_timeout_ms),
            instance_memory_bytes: self.instance_memory_mib << 20,
            max_connections: self.max_connections,
            guest_perf_map: self.guest_perf_map,
            compile_cache: self.compile_cache.clone(),
            instance_reuse: self.instance_reuse,
            instance_idle: Duration::from_millis(self.instance_idle_ms),
            host_replies: self.host_replies,
        }
    }
}
