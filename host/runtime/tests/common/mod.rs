//! Shared by the integration tests: the runtime, guests, a tiny executor.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use wasmtap_kernel::MappedRegion;
use wasmtap_ring::region::SharedRegion;
use wasmtap_runtime::{
    InstanceLimits, InstanceSpec, Module, RestartPolicy, Runtime, RuntimeConfig, Tenant,
    WasmBackend,
};
use wasmtap_scsi::{BlockBackend, BufMut, BufRef, BufferError, Extent, Lba, Memory, SgBuffer};

pub fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 16,
        max_memory_per_instance: 512 << 20,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// The hostile guest's component bytes, built once per test binary.
pub fn hostile_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let manifest =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile-guest/Cargo.toml");
        let dir = target_dir().join("hostile-guest");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("run cargo for the hostile guest");
        assert!(st.success(), "building the hostile guest failed");
        std::fs::read(dir.join("wasm32-wasip2/release/wasmtap_hostile_guest.wasm")).unwrap()
    })
}

/// Limits that make failures show up fast.
pub fn quick_limits() -> InstanceLimits {
    InstanceLimits {
        memory: 64 << 20,
        call_deadline: Duration::from_millis(200),
        open_deadline: Duration::from_secs(5),
        request_timeout: Duration::from_millis(500),
        ..InstanceLimits::default()
    }
}

pub fn quick_policy() -> RestartPolicy {
    RestartPolicy {
        max_failures: 3,
        window: Duration::from_secs(60),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
    }
}

pub fn spec(module: &Module, config: &str, tenant: &Tenant) -> InstanceSpec {
    let mut s = InstanceSpec::new(module.clone(), config, tenant.clone());
    s.limits = quick_limits();
    s.restart = quick_policy();
    s
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Run a future to completion on this thread.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Write `data` at `lba` through a heap buffer.
pub fn write_vec(b: &WasmBackend, lba: u64, data: &[u8]) -> wasmtap_scsi::BackendResult {
    let v = data.to_vec();
    block_on(b.write(Lba(lba), BufRef::whole(&v), false))
}

/// Read `len` bytes at `lba` through a heap buffer.
pub fn read_vec(
    b: &WasmBackend,
    lba: u64,
    len: usize,
) -> Result<Vec<u8>, wasmtap_scsi::BackendError> {
    let mut v = vec![0xAAu8; len];
    let n = v.len() as u64;
    block_on(b.read(Lba(lba), BufMut::new(&mut v, 0, n).unwrap()))?;
    Ok(v)
}

/// Assert the well-behaved device still holds `data` at `lba`.
pub fn assert_serves(b: &WasmBackend, lba: u64, data: &[u8]) {
    assert_eq!(
        read_vec(b, lba, data.len()).expect("healthy device read"),
        data
    );
}

/// The TCMU region as the SCSI target's `Memory`.
pub struct RegionMemory(pub Arc<MappedRegion>);

impl Memory for RegionMemory {
    fn read(&self, addr: u64, dst: &mut [u8]) -> Result<(), BufferError> {
        self.0
            .read_bytes(addr, dst)
            .map_err(|_| BufferError::Inaccessible {
                addr,
                len: dst.len() as u64,
            })
    }
    fn write(&self, addr: u64, src: &[u8]) -> Result<(), BufferError> {
        self.0
            .write_bytes(addr, src)
            .map_err(|_| BufferError::Inaccessible {
                addr,
                len: src.len() as u64,
            })
    }
    fn zero(&self, addr: u64, len: u64) -> Result<(), BufferError> {
        self.0
            .fill_bytes(addr, len, 0)
            .map_err(|_| BufferError::Inaccessible { addr, len })
    }
}

/// Scattered extents of `len` bytes in a region: pieces in reverse order
/// with gaps, so a wrong walk shows.
pub fn scattered(len: u64, piece: u64, base: u64) -> Vec<Extent> {
    let n = len.div_ceil(piece);
    (0..n)
        .map(|i| Extent {
            addr: base + (n - 1 - i) * (piece + 512),
            len: piece.min(len - i * piece),
        })
        .collect()
}

pub fn sg<'a>(mem: &'a RegionMemory, ext: &'a [Extent]) -> SgBuffer<'a, RegionMemory> {
    SgBuffer::new(mem, ext)
}
