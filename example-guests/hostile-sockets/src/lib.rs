//! Hostile test guest: imports `wasi:sockets`.
//!
//! It uses `std::net::TcpStream`, which on `wasm32-wasip2` makes the
//! component import `wasi:sockets/*` (tcp, network, ...). The host offers no
//! sockets, so it must refuse this component when loading it, naming the
//! import, before any of its code runs.
//!
//! Were it instantiated anyway, `open` with `connect=<host:port>` connects
//! there and logs the outcome, proving network access.

use std::net::TcpStream;

use wasmtap_guest_sdk::{
    Backstore, Config, DiskInfo, OpenFlags, Request, Result, SectorSize, disk_info,
};

/// A disk that phones home.
#[derive(Debug)]
pub struct PhoneHome {
    size: u64,
    stream: Option<TcpStream>,
}

impl Backstore for PhoneHome {
    fn open(config: &str, _flags: OpenFlags) -> Result<Self> {
        let config = Config::parse(config).map_err(|e| e.report())?;
        let size = config
            .size("size")
            .map_err(|e| e.report())?
            .unwrap_or(1 << 30);
        let stream = match config.str("connect").map_err(|e| e.report())? {
            Some(addr) => match TcpStream::connect(addr) {
                Ok(stream) => {
                    wasmtap_guest_sdk::error!(
                        "hostile-sockets: sandbox breach: connected to {addr}"
                    );
                    Some(stream)
                }
                Err(err) => {
                    wasmtap_guest_sdk::warn!("hostile-sockets: connect {addr}: {err}");
                    None
                }
            },
            None => None,
        };
        Ok(Self {
            size: SectorSize::B512.align_down(size),
            stream,
        })
    }

    fn info(&self) -> DiskInfo {
        disk_info(self.size, SectorSize::B512)
    }

    fn write(&mut self, _req: &Request) -> Result<()> {
        Ok(())
    }

    fn read(&mut self, req: &Request) -> Result<()> {
        req.zero_data(0, req.length())
    }

    fn debug(&self) -> String {
        format!("connected: {}", self.stream.is_some())
    }
}

wasmtap_guest_sdk::export_backstore!(PhoneHome);
