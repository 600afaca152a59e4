//! The host's bounded log.
//!
//! Messages end up in the daemon's log and on the device's page; the host
//! truncates each to 1 KiB and rate-limits them per device, so log state
//! changes and failures, not every request.
//!
//! Compiled for anything but `wasm32` (unit tests of a backstore's logic on
//! the build machine), the functions print to standard error instead, and
//! the in-process host keeps the lines for the test to read
//! (`testing::Host::logs`).

pub use crate::bindings::wasmtap::backstore::log::Level;

/// Send `message` to the host log at `level`.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::wasmtap::backstore::log::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    {
        eprintln!("[{level:?}] {message}");
        crate::native::log(level, message);
    }
}

/// Log at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Log at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Log at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Log at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Log a formatted message at error level: `error!("open {path}: {err}")`.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log::error(&::std::format!($($arg)+)) };
}

/// Log a formatted message at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log::warn(&::std::format!($($arg)+)) };
}

/// Log a formatted message at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log::info(&::std::format!($($arg)+)) };
}

/// Log a formatted message at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log::debug(&::std::format!($($arg)+)) };
}
