//! Write seed inputs for the `ring_entries` fuzz target: real rings produced
//! by the kernel simulator (commands with data, PAD wraps, TMRs), in the
//! target's input layout (see fuzz/fuzz_targets/ring_entries.rs).
//!
//! `cargo run -p wasmtap-ring --features test-utils --example ring_fuzz_seeds -- DIR`

use wasmtap_ring::abi::{self, mailbox};
use wasmtap_ring::sim::{DataDir, KernelSim, SimConfig};
use wasmtap_ring::{HeapRegion, SharedRegion};

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).expect("usage: ring_fuzz_seeds DIR");
    std::fs::create_dir_all(&dir)?;
    let cfg = SimConfig {
        cmdr_size: 2048,
        data_blocks: 2,
        data_pages_per_blk: 1,
        page_size: 4096,
        caps: abi::CAP_OOOC | abi::CAP_READ_LEN | abi::CAP_TMR,
    };
    let scenarios: [&[(&[u8], DataDir)]; 4] = [
        &[(&[0x00; 6], DataDir::None)],
        &[
            (&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], DataDir::FromDevice(512)),
            (
                &[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                DataDir::ToDevice(vec![0xab; 512]),
            ),
        ],
        &[(&[0x88; 16], DataDir::FromDevice(6000))],
        &[
            (&[0x12, 0, 0, 0, 36, 0], DataDir::FromDevice(36)),
            (&[0x25; 10], DataDir::FromDevice(8)),
            (&[0x00; 6], DataDir::None),
        ],
    ];
    for (i, cmds) in scenarios.iter().enumerate() {
        let r = HeapRegion::new(cfg.region_len());
        let mut sim = KernelSim::new(&r, cfg).expect("sim");
        for (tag, (cdb, dir)) in cmds.iter().enumerate() {
            sim.submit(tag as u64, cdb, dir.clone()).expect("submit");
        }
        if i == 3 {
            sim.task_management(abi::tmr_type::ABORT_TASK, &[0, 1])
                .expect("tmr");
        }
        let head = r.load_u32_acquire(mailbox::CMD_HEAD as u64).expect("head");
        let mut bytes = vec![0u8; cfg.region_len() - abi::MAILBOX_SIZE];
        r.read_bytes(abi::MAILBOX_SIZE as u64, &mut bytes)
            .expect("read");
        let mut seed = vec![cfg.caps as u8, 4, 1, 0];
        seed.extend_from_slice(&head.to_ne_bytes());
        seed.extend_from_slice(&bytes[..2048 + 4096]);
        std::fs::write(format!("{dir}/sim-{i}"), seed)?;
    }
    Ok(())
}
