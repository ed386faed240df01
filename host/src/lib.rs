//! bandvote's wasm host: runs the HTTP intake component on wasmtime.
//!
//! * [`runtime::IntakeRuntime`] compiles the component once, links WASI,
//!   `wasi:http` and our `bandvote:publisher` import, pre-instantiates it, and
//!   serves each request on an instance with a deadline and a memory limit:
//!   a fresh one, or with `--instance-reuse N` one that served earlier
//!   requests cleanly ([`warm`] decides which instances come back).
//! * [`publisher`] implements the `bandvote:publisher` import natively with the
//!   [`bandvote_kafka::VotePublisher`] (the guest's `publish` returns only after
//!   Kafka's acks=all delivery report).
//! * [`state`] is an instance's store data; it holds the publisher's host
//!   state, which the linker reaches through a projection (no module cycle:
//!   `runtime` → `state` → `publisher`).
//! * [`server`] is the hyper front end and the admin endpoints
//!   (`/metrics`, `/healthz`, `/readyz`), with graceful shutdown.

pub mod config;
pub mod metrics;
pub mod publisher;
pub mod runtime;
pub mod server;
pub mod state;
pub mod warm;

pub use config::HostConfig;
