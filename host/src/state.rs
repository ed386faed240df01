//! The store data of an intake instance: WASI with no filesystem, no sockets,
//! no env, `wasi:http` types, the memory limit, and the publisher import's
//! host state (replaced for every request the instance serves).

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::publisher::PublisherHost;

/// An instance's store data: WASI with no filesystem, no sockets, no env.
pub struct RequestState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: GuestLimits,
    pub(crate) publisher: PublisherHost,
}

impl RequestState {
    /// Fresh store data: `memory_bytes` of linear memory at most (growing past
    /// it traps), the request's publisher state.
    pub(crate) fn new(memory_bytes: usize, publisher: PublisherHost) -> Self {
        Self {
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            limits: GuestLimits::new(memory_bytes),
            publisher,
        }
    }

    /// A host resource (request, body, stream, response) is still in the
    /// table: the guest did not drop everything its request gave it.
    pub(crate) fn holds_resources(&self) -> bool {
        !self.table.is_empty()
    }
}

/// The store's resource limits, which also remember the largest linear
/// memory the guest has grown to (an instance whose heap grew large is not
/// reused: `warm::ReusePolicy`).
pub(crate) struct GuestLimits {
    limits: StoreLimits,
    memory_peak: usize,
}

impl GuestLimits {
    fn new(memory_bytes: usize) -> Self {
        let limits = StoreLimitsBuilder::new().memory_size(memory_bytes).instances(16).trap_on_grow_failure(true).build();
        Self { limits, memory_peak: 0 }
    }

    /// The largest size, in bytes, any of the instance's memories has had.
    pub(crate) fn memory_peak(&self) -> usize {
        self.memory_peak
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_peak = self.memory_peak.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl WasiView for RequestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for RequestState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: Default::default() }
    }
}

/// The `HasData` of the resource table (wasi:io).
struct Table;

impl wasmtime::component::HasData for Table {
    type Data<'a> = &'a mut ResourceTable;
}

/// Link the WASI an intake may import, and nothing more: `wasi:io`, clocks,
/// random, `wasi:cli` (stdio, an empty environment, exit) and `wasi:http/types`.
/// No filesystem, no sockets, no outgoing HTTP: a component that imports any
/// of them fails to link at startup instead of finding an empty `WasiCtx`.
pub(crate) fn link_wasi(linker: &mut wasmtime::component::Linker<RequestState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
    use wasmtime_wasi::p2::bindings::{cli, clocks, io, random};
    use wasmtime_wasi::random::{WasiRandom, WasiRandomView as _};

    fn table(s: &mut RequestState) -> &mut ResourceTable {
        &mut s.table
    }
    io::error::add_to_linker::<_, Table>(linker, table)?;
    io::poll::add_to_linker::<_, Table>(linker, table)?;
    io::streams::add_to_linker::<_, Table>(linker, table)?;
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(linker, RequestState::clocks)?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(linker, RequestState::clocks)?;
    random::random::add_to_linker::<_, WasiRandom>(linker, RequestState::random)?;
    random::insecure::add_to_linker::<_, WasiRandom>(linker, RequestState::random)?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(linker, RequestState::random)?;
    cli::exit::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::environment::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::stdin::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::stdout::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::stderr::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(linker, RequestState::cli)?;
    let options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
    wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<_, wasmtime_wasi_http::WasiHttp>(linker, &options.into(), RequestState::http)?;
    Ok(())
}
