//! The per-request store data: WASI with no filesystem, no sockets, no env,
//! `wasi:http` types, and the publisher import's host state.

use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::publisher::PublisherHost;

/// Per-request store data: WASI with no filesystem, no sockets, no env.
pub struct RequestState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) publisher: PublisherHost,
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
