//! The WASI subset a Rust `std` guest needs, and nothing more.
//!
//! A component built for `wasm32-wasip2` imports a handful of WASI
//! interfaces through std's runtime even when the backstore never uses
//! them. Measured on the example and test guests (Rust 1.95, wit-bindgen
//! 0.60): `wasi:io/{poll,error,streams}`, `wasi:cli/{environment,exit,stdin,
//! stdout,stderr}` and the five `wasi:cli/terminal-*` interfaces, all
//! @0.2.6. Nothing else: no clocks, no random. The host links exactly
//! those, against a `WasiCtx` with no preopens, no environment variables, no
//! arguments and no network; stdin is empty and stdout/stderr go to the
//! device's bounded log. It never links `wasi:filesystem`, `wasi:sockets` or
//! `wasi:http`: a component importing them is refused at load time.
//!
//! Clocks are deliberately absent: with `wasi:clocks/monotonic-clock` a
//! guest could `poll` on a long timer and park the device's worker inside a
//! host call, where epoch interruption does not reach. Without it, every
//! pollable the guest can obtain (empty stdin, log-backed stdout/stderr) is
//! ready at once, so `wasi:io/poll` never blocks. A guest that calls
//! `std::time::Instant::now()` or `thread::sleep` is refused at load time,
//! naming the clock import.

use std::pin::Pin;
use std::task::{Context, Poll};

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::host::DeviceState;
use crate::log::GuestLog;

/// The WASI interfaces the host links, without versions (any 0.2.x).
pub(crate) const OFFERED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];

/// WASI packages that are never offered, whatever the version.
pub(crate) const FORBIDDEN_WASI: &[&str] = &["wasi:filesystem", "wasi:sockets", "wasi:http"];

/// stdout or stderr of a guest, into its log.
#[derive(Debug, Clone)]
struct LogSink {
    log: GuestLog,
    stream: &'static str,
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Largest write accepted at once; the log keeps 1 KiB of a line anyway.
const PERMIT: usize = 4096;

#[wasmtime_wasi::async_trait]
impl OutputStream for LogSink {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.log.output(self.stream, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.output(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The guest's WASI context: nothing from the host's ambient environment.
pub(crate) fn context(log: &GuestLog) -> WasiCtx {
    WasiCtxBuilder::new()
        .stdout(LogSink {
            log: log.clone(),
            stream: "stdout",
        })
        .stderr(LogSink {
            log: log.clone(),
            stream: "stderr",
        })
        .build()
}

struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Link the subset listed in [`OFFERED_WASI`].
pub(crate) fn add_to_linker(l: &mut Linker<DeviceState>) -> wasmtime::Result<()> {
    type T = DeviceState;
    wasi::io::error::add_to_linker::<T, HasTable>(l, |t| &mut t.table)?;
    wasi::sync::io::poll::add_to_linker::<T, HasTable>(l, |t| &mut t.table)?;
    wasi::sync::io::streams::add_to_linker::<T, HasTable>(l, |t| &mut t.table)?;
    wasi::cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    Ok(())
}

/// Whether an import name (`ns:pkg/iface@version`) is in the offered subset.
pub(crate) fn offered(name: &str) -> bool {
    let (unversioned, version) = name.split_once('@').unwrap_or((name, ""));
    OFFERED_WASI.contains(&unversioned) && (version.is_empty() || version.starts_with("0.2."))
}

/// Whether an import belongs to a WASI package the host never offers.
pub(crate) fn forbidden(name: &str) -> bool {
    let pkg = name.split(['/', '@']).next().unwrap_or(name);
    FORBIDDEN_WASI.contains(&pkg)
}
