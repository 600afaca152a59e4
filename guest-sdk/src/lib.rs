//! Write wasmtap backstores in Rust.
//!
//! A backstore is a WebAssembly component that decides where a device's
//! blocks live. The host (wasmtap) owns the SCSI protocol and the kernel's
//! TCMU ring; it hands the backstore block *requests* and the backstore
//! completes each one. The contract is the WIT package
//! `wasmtap:backstore@0.1.1` (`wit/backstore.wit`, shipped in this crate
//! and identical to the file the host binds); this crate is everything an
//! author needs to implement it:
//!
//! * [`Backstore`] — a safe trait with defaults for everything but `open` and
//!   `info`;
//! * [`export_backstore!`] — exports a type implementing it as the
//!   component's `driver` (misuse is a compile error);
//! * [`Request`] — the host's request, with completion bookkeeping;
//! * [`storage`] — files in the device's own directory (the only storage a
//!   backstore has);
//! * [`Config`] / [`parse_size`] — the `key=value,...` configuration string;
//! * [`SectorSize`], [`Segments`], [`align_up`], [`align_down`] — sector and
//!   byte arithmetic;
//! * [`log`] and the [`error!`], [`warn!`], [`info!`], [`debug!`] macros —
//!   the host's bounded log;
//! * [`bindings`] — the generated bindings themselves, so you never depend
//!   on `wit-bindgen` (nor pin its version) yourself.
//!
//! # Example: a RAM disk
//!
//! ```
//! use wasmtap_guest_sdk::{Backstore, Config, DiskInfo, ErrorCode, OpenFlags, Result, SectorSize};
//!
//! struct Ram {
//!     data: Vec<u8>,
//!     sector: SectorSize,
//! }
//!
//! impl Backstore for Ram {
//!     fn open(config: &str, _flags: OpenFlags) -> Result<Self> {
//!         let config = Config::parse(config).map_err(|e| e.report())?;
//!         let size = config.size("size").map_err(|e| e.report())?.unwrap_or(16 << 20);
//!         let sector = config.sector_size("sector").map_err(|e| e.report())?.unwrap_or_default();
//!         config.finish().map_err(|e| e.report())?;
//!         let size = usize::try_from(sector.align_down(size)).map_err(|_| ErrorCode::NoSpace)?;
//!         Ok(Ram { data: vec![0; size], sector })
//!     }
//!
//!     fn info(&self) -> DiskInfo {
//!         wasmtap_guest_sdk::disk_info(self.data.len() as u64, self.sector)
//!     }
//!
//!     // The host has checked every range against the disk size.
//!     fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
//!         let start = offset as usize;
//!         buf.copy_from_slice(&self.data[start..start + buf.len()]);
//!         Ok(())
//!     }
//!
//!     fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
//!         let start = offset as usize;
//!         self.data[start..start + data.len()].copy_from_slice(data);
//!         Ok(())
//!     }
//! }
//!
//! wasmtap_guest_sdk::export_backstore!(Ram);
//! ```
//!
//! # Setup
//!
//! * Rust **1.95** or newer (this crate's `rust-version`).
//! * The component target: `rustup target add wasm32-wasip2`.
//! * A library crate with `crate-type = ["cdylib", "rlib"]` under `[lib]`:
//!   `cdylib` makes the component; without it the `wasm32-wasip2` build
//!   writes only an `.rlib` and no `.wasm` file. `rlib` lets `cargo test`
//!   link the unit tests natively.
//! * `wasmtap new NAME` (from a wasmtap checkout) writes such a crate: a
//!   RAM disk to start from, with a native unit test.
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file in `target/wasm32-wasip2/release/` is the component to
//! upload. `docs/guest-guide.md` in the wasmtap repository walks through
//! writing, building and testing a backstore; `example-guests/` holds the
//! `null`, `ram` (sparse, request level) and `raw-file` (zero-copy) examples.
//!
//! # Zero-copy backstores
//!
//! A backstore whose blocks are in a file should not copy them through its
//! own memory. Override [`Backstore::read`] and [`Backstore::write`] and let
//! the host move the data with [`Request::submit_read`] and
//! [`Request::submit_write`]:
//!
//! ```no_run
//! # use wasmtap_guest_sdk::{storage, Request, Result};
//! # struct RawFile { file: storage::File }
//! # impl RawFile {
//! fn read(&mut self, req: &Request) -> Result<()> {
//!     req.submit_read(&self.file, req.offset(), 0, req.length())
//! }
//! # }
//! ```
//!
//! Completing the request right away is fine: the host answers the command
//! only when the I/O it submitted is done.
//!
//! # Unsafe code
//!
//! wasmtap's crates forbid `unsafe` code. This crate is the exception by
//! necessity, and only in [`bindings`]: the code `wit-bindgen` generates
//! there implements the component model's canonical ABI with raw pointers.
//! The crate therefore uses `#![deny(unsafe_code)]` instead of `forbid`, and
//! the `bindings` module alone allows it; every hand-written line is safe
//! code. [`export_backstore!`] expands to the generated export functions,
//! which the compiler attributes to this crate's macros, so a backstore
//! crate can keep `#![forbid(unsafe_code)]`.
//!
//! # Native builds
//!
//! The crate also compiles for the build machine, so a backstore runs under
//! `cargo test` natively. There the host is in process: [`storage`] is an
//! in-memory directory, requests come with in-memory buffers, and [`log`]
//! prints to standard error (and is kept for the test to read). With the
//! `testing` feature, [`testing`] opens a backstore on such a host and
//! drives it with requests the way the daemon does, including crashes that
//! lose what was not synced:
//!
//! ```toml
//! [dev-dependencies]
//! wasmtap-guest-sdk = { path = "...", features = ["testing"] }
//! ```
//!
//! The component (`wasm32`) build never contains the in-process host.

// Natively without the `testing` feature nothing drives the export glue
// and the in-process host (the component build and `testing` do).
#![cfg_attr(
    not(any(target_arch = "wasm32", feature = "testing")),
    allow(dead_code)
)]

extern crate self as wasmtap_guest_sdk;

/// The bindings generated from `wit/backstore.wit` (world `backstore`).
///
/// Everything in the contract, as `wit-bindgen` generates it: the imported
/// interfaces under `wasmtap::backstore::{types, log, storage, requests}`
/// and the exported `driver` under `exports::wasmtap::backstore::driver`.
/// The SDK's types are aliases or wrappers of these.
#[allow(unsafe_code, missing_docs, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "backstore",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "wasmtap_guest_sdk::bindings",
        // The export macro expands in the author's crate, which does not
        // depend on wit-bindgen: point the generated code at our re-export.
        runtime_path: "wasmtap_guest_sdk::__private::wit_bindgen::rt",
        bitflags_path: "wasmtap_guest_sdk::__private::wit_bindgen::rt::bitflags",
    });
}

/// The host the SDK's calls reach: the component's imports in a `wasm32`
/// build, the in-process host ([`testing`] with the `testing` feature)
/// natively. The two have the same shape, so the rest of the SDK is written
/// once.
mod host {
    #[cfg(target_arch = "wasm32")]
    pub(crate) use crate::bindings::wasmtap::backstore::{requests, storage};
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) use crate::native::{requests, storage};
}

mod backstore;
pub mod config;
pub mod geometry;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
mod native;
pub mod request;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

pub use backstore::{BOUNCE_LEN, Backstore, disk_info};
pub use config::{Config, ConfigError, parse_size};
pub use geometry::{SectorSize, Segment, Segments, align_down, align_up, sector_extents};
pub use request::{Batch, Request, Transfers};

pub use bindings::exports::wasmtap::backstore::driver::Parent;
pub use bindings::wasmtap::backstore::requests::Kind;
pub use bindings::wasmtap::backstore::types::{
    BlockExtent, BlockState, DiskInfo, DiskStats, ErrorCode, OpenFlags,
};

/// The host's `request` resource as generated; see [`Request`] for the SDK's
/// wrapper and [`Request::into_raw`].
pub type RawRequest = bindings::wasmtap::backstore::requests::Request;

/// `Result` with the contract's [`ErrorCode`].
pub type Result<T, E = ErrorCode> = core::result::Result<T, E>;

/// Files in the device's own directory: the only storage a backstore has.
///
/// Paths are relative, use `/` as separator, and may not contain `..` or
/// start with `/`; the host refuses anything else with
/// [`ErrorCode::AccessDenied`]. Use [`File::read_at`]/[`File::write_at`] for
/// metadata (headers, tables) and [`Request::submit_read`] /
/// [`Request::submit_write`] for request data.
///
/// Natively (unit tests) the directory is the in-process host's, in memory:
/// see [`testing`] (feature `testing`).
pub mod storage {
    pub use crate::host::storage::{File, open, remove};
}

#[doc(hidden)]
pub mod __private {
    pub use crate::backstore::{ExportedDisk, assert_backstore};
    pub use wit_bindgen;
}

/// Export a [`Backstore`] as this component's `driver`.
///
/// Use it once, in the crate that is built as the component
/// (`crate-type = ["cdylib"]`):
///
/// ```
/// # use wasmtap_guest_sdk::{Backstore, DiskInfo, OpenFlags, Result, SectorSize};
/// # struct MyDisk;
/// # impl Backstore for MyDisk {
/// #     fn open(_: &str, _: OpenFlags) -> Result<Self> { Ok(MyDisk) }
/// #     fn info(&self) -> DiskInfo { wasmtap_guest_sdk::disk_info(0, SectorSize::B512) }
/// # }
/// wasmtap_guest_sdk::export_backstore!(MyDisk);
/// ```
///
/// Misuse does not compile: a type that does not implement [`Backstore`]
/// is reported as "`T` is not a wasmtap backstore"; exporting twice defines
/// the component's exports twice.
///
/// ```compile_fail
/// struct NotABackstore;
/// wasmtap_guest_sdk::export_backstore!(NotABackstore);
/// ```
///
/// ```compile_fail
/// # use wasmtap_guest_sdk::{Backstore, DiskInfo, OpenFlags, Result, SectorSize};
/// # struct MyDisk;
/// # impl Backstore for MyDisk {
/// #     fn open(_: &str, _: OpenFlags) -> Result<Self> { Ok(MyDisk) }
/// #     fn info(&self) -> DiskInfo { wasmtap_guest_sdk::disk_info(0, SectorSize::B512) }
/// # }
/// wasmtap_guest_sdk::export_backstore!(MyDisk);
/// wasmtap_guest_sdk::export_backstore!(MyDisk);
/// ```
#[macro_export]
macro_rules! export_backstore {
    ($backstore:ty) => {
        // One fixed name per crate: a second export in the same module is a
        // duplicate definition, in another module a duplicate export symbol.
        #[doc(hidden)]
        #[allow(non_camel_case_types, dead_code)]
        struct __wasmtap_backstore_export;

        // Natively (unit tests) there are no exports, but the type must
        // still be a backstore.
        const _: () = $crate::__private::assert_backstore::<$backstore>();

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::wasmtap::backstore::driver::Guest for __wasmtap_backstore_export {
            type Disk = $crate::__private::ExportedDisk<$backstore>;
        }

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::wasmtap::backstore::block_status::Guest for __wasmtap_backstore_export {
            fn query(
                disk: $crate::bindings::exports::wasmtap::backstore::driver::DiskBorrow<'_>,
                offset: u64,
                len: u64,
            ) -> $crate::Result<::std::vec::Vec<$crate::BlockExtent>> {
                disk.get::<$crate::__private::ExportedDisk<$backstore>>()
                    .block_status(offset, len)
            }
        }

        // The canonical-ABI export symbols (`wasmtap:backstore/driver@0.1.1#...`)
        // only mean something in a component; native linkers reject their
        // names, so native builds (unit tests) leave them out.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export!(__wasmtap_backstore_export with_types_in $crate::bindings);
    };
}
