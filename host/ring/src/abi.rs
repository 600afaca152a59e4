//! The TCMU user/kernel ABI: offsets, sizes and constants.
//!
//! Mirrors `include/uapi/linux/target_core_user.h` (Linux 6.x). The region is
//! described by byte offsets rather than `#[repr(C)]` structs the engine
//! dereferences: nothing in this crate ever holds a reference into shared
//! memory. The `layout` test module below nevertheless declares the C structs
//! and pins every offset with compile-time asserts, so a transcription error
//! here fails the build.

/// Mailbox version this engine speaks (`TCMU_MAILBOX_VERSION`).
pub const MAILBOX_VERSION: u16 = 2;
/// Size of the mailbox at the start of the region.
pub const MAILBOX_SIZE: usize = 128;

/// `struct tcmu_mailbox` field offsets.
pub mod mailbox {
    /// `version: u16`, written by the kernel.
    pub const VERSION: usize = 0;
    /// `flags: u16`, capability bits (`CAP_*`).
    pub const FLAGS: usize = 2;
    /// `cmdr_off: u32`, start of the command ring (from the region start).
    pub const CMDR_OFF: usize = 4;
    /// `cmdr_size: u32`, size of the command ring in bytes.
    pub const CMDR_SIZE: usize = 8;
    /// `cmd_head: u32`, written by the kernel with release semantics.
    pub const CMD_HEAD: usize = 12;
    /// `cmd_tail: u32`, written by user space; on its own cache line.
    pub const CMD_TAIL: usize = 64;
}

/// Out-of-order completion is allowed (`TCMU_MAILBOX_FLAG_CAP_OOOC`).
pub const CAP_OOOC: u16 = 1 << 0;
/// Short reads may be reported with `read_len` (`..._CAP_READ_LEN`).
pub const CAP_READ_LEN: u16 = 1 << 1;
/// The kernel may queue TMR entries (`..._CAP_TMR`).
pub const CAP_TMR: u16 = 1 << 2;
/// Data buffers may be kept after completion (`..._CAP_KEEP_BUF`).
pub const CAP_KEEP_BUF: u16 = 1 << 3;

/// Entry opcodes, in the low three bits of `len_op`.
pub mod op {
    /// Padding up to the end of the ring.
    pub const PAD: u8 = 0;
    /// A SCSI command.
    pub const CMD: u8 = 1;
    /// A task management request (notification only).
    pub const TMR: u8 = 2;
}
/// Mask of the opcode bits in `len_op`.
pub const OP_MASK: u32 = 0x7;
/// Entries are aligned to and sized in multiples of this many bytes.
pub const ENTRY_ALIGN: usize = 8;

/// Flags user space sets in `hdr.uflags`.
pub mod uflag {
    /// The entry's opcode was not understood.
    pub const UNKNOWN_OP: u8 = 0x1;
    /// `rsp.read_len` is valid (short read).
    pub const READ_LEN: u8 = 0x2;
    /// Keep the data buffer after completion (unused by wasmtap).
    pub const KEEP_BUF: u8 = 0x4;
}

/// `struct tcmu_cmd_entry_hdr` (8 bytes) field offsets within an entry.
pub mod hdr {
    /// `len_op: u32`.
    pub const LEN_OP: usize = 0;
    /// `cmd_id: u16`.
    pub const CMD_ID: usize = 4;
    /// `kflags: u8`.
    pub const KFLAGS: usize = 6;
    /// `uflags: u8`.
    pub const UFLAGS: usize = 7;
    /// Size of the header.
    pub const SIZE: usize = 8;
}

/// Request view of `struct tcmu_cmd_entry`.
pub mod req {
    /// `iov_cnt: u32`.
    pub const IOV_CNT: usize = 8;
    /// `iov_bidi_cnt: u32`.
    pub const IOV_BIDI_CNT: usize = 12;
    /// `iov_dif_cnt: u32`.
    pub const IOV_DIF_CNT: usize = 16;
    /// `cdb_off: u64`, an offset from the region start.
    pub const CDB_OFF: usize = 24;
    /// `iov[]`: `struct iovec` array, 16 bytes per element.
    pub const IOV: usize = 48;
    /// Size of one `struct iovec`.
    pub const IOV_SIZE: usize = 16;
}

/// Response view of `struct tcmu_cmd_entry` (overlaps the request view).
pub mod rsp {
    /// `scsi_status: u8`.
    pub const SCSI_STATUS: usize = 8;
    /// `read_len: u32`.
    pub const READ_LEN: usize = 12;
    /// `sense_buffer[96]`.
    pub const SENSE: usize = 16;
    /// `TCMU_SENSE_BUFFERSIZE`.
    pub const SENSE_SIZE: usize = 96;
}

/// `sizeof(struct tcmu_cmd_entry)`: the response needs this much of any CMD slot.
pub const CMD_ENTRY_SIZE: usize = 112;

/// `struct tcmu_tmr_entry` field offsets.
pub mod tmr {
    /// `tmr_type: u8`.
    pub const TMR_TYPE: usize = 8;
    /// `cmd_cnt: u32`.
    pub const CMD_CNT: usize = 12;
    /// `cmd_ids: u16[]`.
    pub const CMD_IDS: usize = 32;
}

/// Task management function codes carried by a TMR entry (`enum tcmu_tmr_type`).
pub mod tmr_type {
    /// ABORT TASK.
    pub const ABORT_TASK: u8 = 1;
    /// ABORT TASK SET.
    pub const ABORT_TASK_SET: u8 = 2;
    /// CLEAR ACA.
    pub const CLEAR_ACA: u8 = 3;
    /// CLEAR TASK SET.
    pub const CLEAR_TASK_SET: u8 = 4;
    /// LOGICAL UNIT RESET.
    pub const LUN_RESET: u8 = 5;
    /// TARGET WARM RESET.
    pub const TARGET_WARM_RESET: u8 = 6;
    /// TARGET COLD RESET.
    pub const TARGET_COLD_RESET: u8 = 7;
    /// LUN reset on behalf of persistent reservations.
    pub const LUN_RESET_PRO: u8 = 128;
}

/// Largest CDB LIO forwards (`TCM_MAX_COMMAND_SIZE`).
pub const MAX_CDB_LEN: usize = 32;

/// SCSI status GOOD (SAM-5).
pub const SAM_STAT_GOOD: u8 = 0x00;
/// SCSI status CHECK CONDITION (SAM-5); the unshifted value.
pub const SAM_STAT_CHECK_CONDITION: u8 = 0x02;
/// SCSI status BUSY (SAM-5).
pub const SAM_STAT_BUSY: u8 = 0x08;
/// SCSI status TASK SET FULL (SAM-5).
pub const SAM_STAT_TASK_SET_FULL: u8 = 0x28;

/// Size in bytes of a CMD entry carrying `iov_cnt` iovecs and a CDB of
/// `cdb_len` bytes, as `target_core_user.c` computes it: the base entry grows
/// with the iovec array but is never smaller than `struct tcmu_cmd_entry`, and
/// the CDB follows, rounded up to the entry alignment.
pub fn cmd_entry_len(iov_cnt: usize, cdb_len: usize) -> Option<usize> {
    let base = iov_cnt
        .checked_mul(req::IOV_SIZE)?
        .checked_add(req::IOV)?
        .max(CMD_ENTRY_SIZE);
    base.checked_add(cdb_len.checked_next_multiple_of(ENTRY_ALIGN)?)
}

/// Size of a TMR entry listing `cmd_cnt` command ids.
pub fn tmr_entry_len(cmd_cnt: usize) -> Option<usize> {
    cmd_cnt
        .checked_mul(2)?
        .checked_add(tmr::CMD_IDS)?
        .checked_next_multiple_of(ENTRY_ALIGN)
}

/// CDB length from its operation code, as the kernel's `scsi_command_size()`
/// computes it: the group code (top three bits) gives 6, 10, 12 or 16 bytes;
/// the variable-length opcode 0x7F carries `additional length` in byte 7.
pub fn cdb_len_from_opcode(opcode: u8, byte7: Option<u8>) -> usize {
    const BY_GROUP: [usize; 8] = [6, 10, 10, 12, 16, 12, 10, 10];
    if opcode == 0x7f {
        usize::from(byte7.unwrap_or(0)) + 8
    } else {
        BY_GROUP[usize::from(opcode >> 5)]
    }
}

/// Bytes free in a ring of `size` bytes with the producer at `head` and the
/// consumer at `tail`; one byte always stays free so head == tail means empty.
pub fn ring_free(head: u32, tail: u32, size: u32) -> u32 {
    (tail.wrapping_add(size).wrapping_sub(head).wrapping_sub(1)) % size
}

#[cfg(test)]
mod layout {
    //! The C structs, transcribed, with every offset pinned at compile time.
    use core::mem::{align_of, offset_of, size_of};

    #[repr(C, align(64))]
    struct TcmuMailbox {
        version: u16,
        flags: u16,
        cmdr_off: u32,
        cmdr_size: u32,
        cmd_head: u32,
        // `__u32 cmd_tail __attribute__((__aligned__(ALIGN_SIZE)))`
        _pad: [u8; 48],
        cmd_tail: u32,
    }
    #[repr(C)]
    struct Hdr {
        len_op: u32,
        cmd_id: u16,
        kflags: u8,
        uflags: u8,
    }
    #[repr(C)]
    struct Iovec {
        base: u64,
        len: u64,
    }
    #[repr(C)]
    struct Req {
        iov_cnt: u32,
        iov_bidi_cnt: u32,
        iov_dif_cnt: u32,
        cdb_off: u64,
        __pad1: u64,
        __pad2: u64,
        iov: [Iovec; 0],
    }
    #[repr(C)]
    struct Rsp {
        scsi_status: u8,
        __pad1: u8,
        __pad2: u16,
        read_len: u32,
        sense_buffer: [u8; 96],
    }
    #[repr(C)]
    union ReqRsp {
        req: core::mem::ManuallyDrop<Req>,
        rsp: core::mem::ManuallyDrop<Rsp>,
    }
    #[repr(C, align(8))]
    struct CmdEntry {
        hdr: Hdr,
        u: ReqRsp,
    }
    #[repr(C, align(8))]
    struct TmrEntry {
        hdr: Hdr,
        tmr_type: u8,
        __pad1: u8,
        __pad2: u16,
        cmd_cnt: u32,
        __pad3: u64,
        __pad4: u64,
        cmd_ids: [u16; 0],
    }

    use super::*;
    const _: () = {
        assert!(size_of::<TcmuMailbox>() == MAILBOX_SIZE);
        assert!(align_of::<TcmuMailbox>() == 64);
        assert!(offset_of!(TcmuMailbox, version) == mailbox::VERSION);
        assert!(offset_of!(TcmuMailbox, flags) == mailbox::FLAGS);
        assert!(offset_of!(TcmuMailbox, cmdr_off) == mailbox::CMDR_OFF);
        assert!(offset_of!(TcmuMailbox, cmdr_size) == mailbox::CMDR_SIZE);
        assert!(offset_of!(TcmuMailbox, cmd_head) == mailbox::CMD_HEAD);
        assert!(offset_of!(TcmuMailbox, cmd_tail) == mailbox::CMD_TAIL);

        assert!(size_of::<Hdr>() == hdr::SIZE);
        assert!(offset_of!(Hdr, len_op) == hdr::LEN_OP);
        assert!(offset_of!(Hdr, cmd_id) == hdr::CMD_ID);
        assert!(offset_of!(Hdr, kflags) == hdr::KFLAGS);
        assert!(offset_of!(Hdr, uflags) == hdr::UFLAGS);

        assert!(offset_of!(CmdEntry, u) == hdr::SIZE);
        assert!(hdr::SIZE + offset_of!(Req, iov_cnt) == req::IOV_CNT);
        assert!(hdr::SIZE + offset_of!(Req, iov_bidi_cnt) == req::IOV_BIDI_CNT);
        assert!(hdr::SIZE + offset_of!(Req, iov_dif_cnt) == req::IOV_DIF_CNT);
        assert!(hdr::SIZE + offset_of!(Req, cdb_off) == req::CDB_OFF);
        assert!(hdr::SIZE + offset_of!(Req, iov) == req::IOV);
        assert!(size_of::<Iovec>() == req::IOV_SIZE);
        assert!(hdr::SIZE + offset_of!(Rsp, scsi_status) == rsp::SCSI_STATUS);
        assert!(hdr::SIZE + offset_of!(Rsp, read_len) == rsp::READ_LEN);
        assert!(hdr::SIZE + offset_of!(Rsp, sense_buffer) == rsp::SENSE);
        assert!(size_of::<CmdEntry>() == CMD_ENTRY_SIZE);

        assert!(offset_of!(TmrEntry, tmr_type) == tmr::TMR_TYPE);
        assert!(offset_of!(TmrEntry, cmd_cnt) == tmr::CMD_CNT);
        assert!(offset_of!(TmrEntry, cmd_ids) == tmr::CMD_IDS);
    };

    #[test]
    fn cmd_entry_len_matches_kernel_formula() {
        // No iovecs: the base entry is the full struct.
        assert_eq!(cmd_entry_len(0, 6), Some(112 + 8));
        // Four iovecs still fit in the 112-byte struct (48 + 64).
        assert_eq!(cmd_entry_len(4, 10), Some(112 + 16));
        // Five iovecs grow the base past the struct (48 + 80).
        assert_eq!(cmd_entry_len(5, 16), Some(128 + 16));
        assert_eq!(cmd_entry_len(usize::MAX, 16), None);
    }

    #[test]
    fn cdb_len_follows_group_code() {
        assert_eq!(cdb_len_from_opcode(0x00, None), 6); // TEST UNIT READY
        assert_eq!(cdb_len_from_opcode(0x28, None), 10); // READ(10)
        assert_eq!(cdb_len_from_opcode(0xa8, None), 12); // READ(12)
        assert_eq!(cdb_len_from_opcode(0x88, None), 16); // READ(16)
        assert_eq!(cdb_len_from_opcode(0x7f, Some(24)), 32); // READ(32)
    }

    #[test]
    fn ring_free_keeps_one_byte() {
        assert_eq!(ring_free(0, 0, 1024), 1023);
        assert_eq!(ring_free(1016, 0, 1024), 7);
        assert_eq!(ring_free(8, 16, 1024), 7);
        assert_eq!(ring_free(16, 8, 1024), 1015);
    }
}
