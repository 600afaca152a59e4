//! Arbitrary bytes as the contents of a TCMU region: the engine must either
//! hand out commands whose CDB and iovecs lie inside the region, or report a
//! corrupt ring — never panic, hang or read out of bounds.
//!
//! Input layout: byte 0 picks the capability flags, byte 1 the drain limit,
//! bytes 2..4 the completion order seed, bytes 4..8 cmd_head, the rest is
//! copied over the command ring (and spills into the data area).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmtap_ring::abi::{self, mailbox};
use wasmtap_ring::{Entry, HeapRegion, Response, Ring, SharedRegion};

const CMDR_SIZE: u32 = 2048;
const DATA: usize = 8192;

fuzz_target!(|input: &[u8]| {
    if input.len() < 8 {
        return;
    }
    let region_len = abi::MAILBOX_SIZE + CMDR_SIZE as usize + DATA;
    let r = HeapRegion::new(region_len);
    r.write_u16(mailbox::VERSION as u64, abi::MAILBOX_VERSION).unwrap();
    r.write_u16(mailbox::FLAGS as u64, u16::from(input[0] & 0xf)).unwrap();
    r.write_u32(mailbox::CMDR_OFF as u64, abi::MAILBOX_SIZE as u32).unwrap();
    r.write_u32(mailbox::CMDR_SIZE as u64, CMDR_SIZE).unwrap();
    let body = &input[8..];
    let n = body.len().min(region_len - abi::MAILBOX_SIZE);
    r.write_bytes(abi::MAILBOX_SIZE as u64, &body[..n]).unwrap();
    let head = u32::from_ne_bytes(input[4..8].try_into().unwrap());
    r.store_u32_release(mailbox::CMD_HEAD as u64, head).unwrap();

    let mut ring = Ring::attach(&r).unwrap();
    let limit = usize::from(input[1]).max(1);
    let mut seed = u16::from_ne_bytes([input[2], input[3]]) as usize;
    let mut held = Vec::new();
    let mut out = Vec::new();
    for _ in 0..64 {
        out.clear();
        let Ok(d) = ring.drain(&mut out, limit) else { break };
        for e in out.drain(..) {
            if let Entry::Command(c) = e {
                assert!(c.cdb().len() <= abi::MAX_CDB_LEN);
                for v in c.data_iovs().iter().chain(c.bidi_iovs()) {
                    assert!(ring.data_area().contains(&v.base) || v.len == 0);
                    assert!(v.base + v.len <= region_len as u64);
                }
                held.push(c);
            }
        }
        // Complete a pseudo-random subset, in a pseudo-random order.
        while !held.is_empty() && seed % 3 != 0 {
            let c = held.swap_remove(seed % held.len());
            seed = seed.wrapping_mul(31).wrapping_add(7);
            let _ = ring.complete(c, &Response::GOOD);
        }
        seed = seed.wrapping_add(1);
        let _ = ring.publish();
        if !d.more && held.is_empty() {
            break;
        }
    }
});
