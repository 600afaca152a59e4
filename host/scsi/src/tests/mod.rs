//! Command-level tests: exact response bytes and error cases per command.

mod commands;
mod limits;
mod props;
mod xcopy;
