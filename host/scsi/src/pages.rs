//! Parameter data the target answers from geometry alone: INQUIRY and its
//! VPD pages, READ CAPACITY, mode pages, REPORT SUPPORTED OPERATION CODES.
//!
//! Each builder returns the complete response; the caller truncates it to
//! the ALLOCATION LENGTH (SPC-4 4.2.5.6).

use crate::backend::{DiskInfo, WriteCache};
use crate::cdb::{self, Offered, OpInfo, PageControl};
use crate::identity::DeviceIdentity;
use crate::sense::{CommandError, FieldPointer};
use crate::units::be;

/// Largest WRITE SAME we accept, in blocks (VPD 0xB0 MAXIMUM WRITE SAME
/// LENGTH). Pattern writes are issued in chunks; zero/unmap in one call.
pub const MAX_WRITE_SAME_BLOCKS: u64 = 1 << 22;

/// Largest COMPARE AND WRITE, in blocks (VPD 0xB0 byte 5; the CDB field is
/// one byte).
pub fn max_compare_and_write(info: &DiskInfo) -> u64 {
    info.max_transfer.0.min(255)
}

/// Upper bound of a WRITE ATOMIC in bytes. An atomic write is one backend
/// call made under an exclusive range lock, which holds up every
/// overlapping command while it runs; 64 KiB covers the page sizes of the
/// common databases and keeps that window short.
pub const MAX_ATOMIC_BYTES: u64 = 64 << 10;

/// Largest WRITE ATOMIC, in blocks (VPD B0h MAXIMUM ATOMIC TRANSFER LENGTH,
/// SBC-4): [`MAX_ATOMIC_BYTES`] or the maximum transfer, whichever is
/// less, rounded down to whole physical blocks but at least one physical
/// block (which `DiskInfo::validate` keeps within the maximum transfer).
pub fn max_atomic_blocks(info: &DiskInfo) -> u64 {
    let physical = info.physical_blocks();
    let cap = (MAX_ATOMIC_BYTES / u64::from(info.block_size)).min(info.max_transfer.0);
    (cap / physical * physical).max(physical)
}

/// ATOMIC ALIGNMENT and ATOMIC TRANSFER LENGTH GRANULARITY (VPD B0h, SBC-4),
/// in blocks: one physical block when it is larger than a logical one (an
/// atomic write never covers part of a physical block), otherwise 0 (no
/// requirement).
pub fn atomic_granularity(info: &DiskInfo) -> u64 {
    match info.physical_blocks() {
        1 => 0,
        p => p,
    }
}

/// Peripheral qualifier 000b, device type 00h: a connected direct-access
/// block device (SPC-4 6.4.2).
const PERIPHERAL: u8 = 0x00;

/// The standards the device claims, as VERSION DESCRIPTORs of the standard
/// INQUIRY data (SPC-4 table 141, "no version claimed" codes): SAM-5,
/// SPC-4, SBC-3. Strict initiators read them before trusting the Block
/// Limits VPD page.
pub const VERSION_DESCRIPTORS: [u16; 3] = [0x00A0, 0x0460, 0x04C0];

/// Length of the standard INQUIRY data: through the last of the eight
/// VERSION DESCRIPTOR fields (bytes 58..74).
pub const STANDARD_INQUIRY_LEN: usize = 74;

/// Standard INQUIRY data (SPC-4 6.4.2, table 139), 74 bytes: the fixed
/// fields, then the version descriptors at bytes 58..74.
pub fn standard_inquiry(id: &DeviceIdentity) -> Vec<u8> {
    let mut d = vec![0u8; STANDARD_INQUIRY_LEN];
    d[0] = PERIPHERAL;
    d[1] = 0x00; // RMB = 0: not removable
    d[2] = 0x06; // VERSION: SPC-4
    d[3] = 0x12; // HISUP = 1, RESPONSE DATA FORMAT = 2
    d[4] = (STANDARD_INQUIRY_LEN - 5) as u8; // ADDITIONAL LENGTH
    d[5] = 0x08; // 3PC: EXTENDED COPY(LID1) is supported (crate::xcopy)
    d[7] = 0x02; // CMDQUE: full task management model
    d[8..16].copy_from_slice(id.vendor());
    d[16..32].copy_from_slice(id.product());
    d[32..36].copy_from_slice(id.revision());
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        be::put(&mut d[58 + 2 * i..60 + 2 * i], u64::from(*v));
    }
    d
}

/// VPD pages in the order of the Supported VPD Pages page.
pub const VPD_PAGES: [u8; 7] = [0x00, 0x80, 0x83, 0x8F, 0xB0, 0xB1, 0xB2];

fn vpd(page: u8, body: &[u8]) -> Vec<u8> {
    let mut d = vec![PERIPHERAL, page, 0, 0];
    be::put(&mut d[2..4], body.len() as u64);
    d.extend_from_slice(body);
    d
}

/// A VPD page, or INVALID FIELD IN CDB (byte 2) for pages we do not have.
pub fn vpd_page(page: u8, id: &DeviceIdentity, info: &DiskInfo) -> Result<Vec<u8>, CommandError> {
    Ok(match page {
        // SPC-4 7.8.13 Supported VPD Pages.
        0x00 => vpd(0x00, &VPD_PAGES),
        // SPC-4 7.8.15 Unit Serial Number.
        0x80 => vpd(0x80, id.serial().as_bytes()),
        // SPC-4 7.8.6 Device Identification.
        0x83 => {
            let mut b = Vec::new();
            // NAA designator (7.8.6.6): code set binary, association LU,
            // type 3 (NAA), NAA 3h locally assigned (7.8.6.6.3).
            b.extend_from_slice(&[0x01, 0x03, 0x00, 0x08]);
            b.extend_from_slice(&id.naa().to_be_bytes());
            // T10 vendor ID designator (7.8.6.4): code set ASCII,
            // association LU, type 1; vendor id then the serial number.
            let serial = id.serial().as_bytes();
            b.extend_from_slice(&[0x02, 0x01, 0x00, (8 + serial.len()) as u8]);
            b.extend_from_slice(id.vendor());
            b.extend_from_slice(serial);
            vpd(0x83, &b)
        }
        // SPC-4 7.8.17 Third-party Copy.
        0x8F => vpd(0x8F, &crate::xcopy::third_party_copy_descriptors(info)),
        // SBC-3 6.6.4 Block Limits, page length 3Ch, with the SBC-4 atomic
        // write fields in bytes 44-63.
        0xB0 => {
            let mut b = [0u8; 0x3C];
            // Sizes are in whole physical blocks (SBC-3 4.6): a 512e disk
            // gets its 4096-byte physical block as the transfer and unmap
            // granularity (Linux ignores an OPTIMAL TRANSFER LENGTH that is
            // not a whole number of physical blocks).
            let physical = info.physical_blocks();
            b[0] = 0x01; // WSNZ: WRITE SAME with zero blocks is refused
            b[1] = max_compare_and_write(info) as u8;
            // OPTIMAL TRANSFER LENGTH GRANULARITY: one physical block.
            be::put(&mut b[2..4], physical);
            be::put(&mut b[4..8], info.max_transfer.0);
            // OPTIMAL TRANSFER LENGTH, rounded down to whole physical blocks
            // (zero, "not reported", if less than one).
            be::put(
                &mut b[8..12],
                (info.optimal_transfer.0 / physical * physical).min(u64::from(u32::MAX)),
            );
            if let Some(d) = info.discard {
                be::put(&mut b[16..20], u64::from(d.max_blocks));
                be::put(&mut b[20..24], u64::from(d.max_descriptors));
                // DiskInfo::validate made sure a granule starts a physical
                // block; the fallback is never used.
                let (granularity, alignment) = d
                    .physical_granule(physical)
                    .unwrap_or((d.granularity.0, d.alignment.0));
                be::put(&mut b[24..28], granularity.min(u64::from(u32::MAX)));
                // UGAVALID + UNMAP GRANULARITY ALIGNMENT (31 bits), when
                // the alignment fits.
                if alignment <= 0x7FFF_FFFF {
                    be::put(&mut b[28..32], 0x8000_0000 | alignment);
                }
            }
            be::put(&mut b[32..40], MAX_WRITE_SAME_BLOCKS);
            // SBC-4 atomic writes (page bytes 44-63): MAXIMUM ATOMIC
            // TRANSFER LENGTH, ATOMIC ALIGNMENT, ATOMIC TRANSFER LENGTH
            // GRANULARITY; the two atomic boundary fields stay zero (one
            // atomic write operation per command).
            be::put(&mut b[40..44], max_atomic_blocks(info));
            be::put(&mut b[44..48], atomic_granularity(info));
            be::put(&mut b[48..52], atomic_granularity(info));
            vpd(0xB0, &b)
        }
        // SBC-3 6.6.2 Block Device Characteristics: non-rotating medium.
        0xB1 => {
            let mut b = [0u8; 0x3C];
            b[1] = 0x01; // MEDIUM ROTATION RATE 0001h
            vpd(0xB1, &b)
        }
        // SBC-3 6.6.5 Logical Block Provisioning.
        0xB2 => {
            let mut b = [0u8; 4];
            if let Some(d) = info.discard {
                // LBPU (UNMAP), LBPWS (WRITE SAME 16 UNMAP), LBPWS10.
                b[1] = 0x80 | 0x40 | 0x20;
                if d.zeroes {
                    b[1] |= 0x04; // LBPRZ
                }
                b[2] = 0x02; // PROVISIONING TYPE: thin
            }
            vpd(0xB2, &b)
        }
        _ => return Err(CommandError::InvalidField(FieldPointer::byte(2))),
    })
}

/// READ CAPACITY (10) parameter data (SBC-3 5.15.2, table 65).
pub fn read_capacity_10(info: &DiskInfo) -> [u8; 8] {
    let mut d = [0u8; 8];
    let last = info.block_count.0.saturating_sub(1);
    // More than 2^32 blocks: FFFFFFFFh tells the initiator to use (16).
    be::put(&mut d[0..4], last.min(u64::from(u32::MAX)));
    be::put(&mut d[4..8], info.block_size.into());
    d
}

/// READ CAPACITY (16) parameter data (SBC-3 5.16.2, table 67).
pub fn read_capacity_16(info: &DiskInfo) -> [u8; 32] {
    let mut d = [0u8; 32];
    be::put(&mut d[0..8], info.block_count.0.saturating_sub(1));
    be::put(&mut d[8..12], info.block_size.into());
    d[13] = info.physical_exponent & 0x0F;
    // Bytes 14-15: LBPME, LBPRZ, and the 14-bit LOWEST ALIGNED LOGICAL
    // BLOCK ADDRESS, 0: LBA 0 starts a physical block.
    let mut b = 0u64;
    if let Some(disc) = info.discard {
        b |= 0x8000; // LBPME
        if disc.zeroes {
            b |= 0x4000; // LBPRZ
        }
    }
    be::put(&mut d[14..16], b);
    d
}

/// READ DEFECT DATA (10) / (12) parameter data (SBC-3): a virtual disk has
/// no defects, so both lists exist and are empty. The header says the list
/// holds the PLIST / GLIST exactly when they were asked for (PLISTV, GLISTV),
/// in the format asked for (an empty list is in every format, so the
/// RECOVERED ERROR for "returned a different format" never arises), with
/// DEFECT LIST LENGTH zero. The 12-byte form's GENERATION CODE is 0000h
/// (not supported): the list never changes.
pub fn defect_data(twelve: bool, plist: bool, glist: bool, format: u8) -> Vec<u8> {
    let mut flags = format & 0x07;
    if plist {
        flags |= 0x10; // PLISTV
    }
    if glist {
        flags |= 0x08; // GLISTV
    }
    let mut d = vec![0u8; if twelve { 8 } else { 4 }];
    d[1] = flags;
    d
}

/// Mode pages we implement, in ascending order (the order of page 3Fh).
pub const MODE_PAGES: [u8; 3] = [0x01, 0x08, 0x0A];

/// One mode page with PS = 0 (nothing can be saved).
pub fn mode_page(page: u8, pc: PageControl, info: &DiskInfo, wce: bool) -> Option<Vec<u8>> {
    let changeable = pc == PageControl::Changeable;
    Some(match page {
        // SBC-3 6.4.7 Read-Write Error Recovery: no recovery parameters.
        0x01 => {
            let mut p = vec![0u8; 12];
            p[0] = 0x01;
            p[1] = 0x0A;
            p
        }
        // SBC-3 6.4.5 Caching: WCE (byte 2 bit 2) is the one changeable bit.
        0x08 => {
            let mut p = vec![0u8; 20];
            p[0] = 0x08;
            p[1] = 0x12;
            let wce = match pc {
                PageControl::Current => wce,
                PageControl::Changeable => true,
                PageControl::Default => info.write_cache == WriteCache::WriteBack,
            };
            if wce {
                p[2] |= 0x04;
            }
            p
        }
        // SPC-4 7.5.7 Control: QUEUE ALGORITHM MODIFIER 1 (commands may be
        // reordered: they complete as the backend finishes them), fixed
        // sense format (D_SENSE 0), QERR 0, TAS 0.
        0x0A => {
            let mut p = vec![0u8; 12];
            p[0] = 0x0A;
            p[1] = 0x0A;
            if !changeable {
                p[3] = 0x10;
            }
            p
        }
        _ => return None,
    })
}

/// MODE SENSE (6)/(10) parameter data (SPC-4 7.5.4-7.5.5, SBC-3 6.4).
#[allow(clippy::too_many_arguments)]
pub fn mode_sense(
    ten: bool,
    dbd: bool,
    llbaa: bool,
    pc: PageControl,
    page: u8,
    subpage: u8,
    info: &DiskInfo,
    wce: bool,
) -> Result<Vec<u8>, CommandError> {
    let mut pages = Vec::new();
    if page == 0x3F {
        // All pages; we have no subpages, so subpage FFh lists the same.
        if subpage != 0x00 && subpage != 0xFF {
            return Err(CommandError::InvalidField(FieldPointer::byte(3)));
        }
        for p in MODE_PAGES {
            pages.extend(mode_page(p, pc, info, wce).unwrap_or_default());
        }
    } else {
        let p = mode_page(page, pc, info, wce)
            .ok_or(CommandError::InvalidField(FieldPointer::bit(2, 5)))?;
        if subpage != 0 {
            return Err(CommandError::InvalidField(FieldPointer::byte(3)));
        }
        pages = p;
    }
    // Block descriptor (SBC-3 6.4.2): short, or long with LLBAA.
    let mut desc = Vec::new();
    if !dbd {
        let (count, bs) = if pc == PageControl::Changeable {
            (0, 0)
        } else {
            (info.block_count.0, u64::from(info.block_size))
        };
        if llbaa {
            desc = vec![0u8; 16];
            be::put(&mut desc[0..8], count);
            be::put(&mut desc[12..16], bs);
        } else {
            desc = vec![0u8; 8];
            be::put(&mut desc[0..4], count.min(u64::from(u32::MAX)));
            be::put(&mut desc[5..8], bs);
        }
    }
    // DEVICE-SPECIFIC PARAMETER (SBC-3 6.4.1): WP and DPOFUA.
    let mut dsp = 0x10;
    if info.read_only {
        dsp |= 0x80;
    }
    let mut d = if ten {
        let mut h = vec![0u8; 8];
        h[3] = dsp;
        if llbaa && !dbd {
            h[4] = 0x01; // LONGLBA
        }
        be::put(&mut h[6..8], desc.len() as u64);
        h
    } else {
        vec![0, 0, dsp, desc.len() as u8]
    };
    d.extend(desc);
    d.extend(pages);
    // MODE DATA LENGTH excludes itself.
    if ten {
        let len = d.len() as u64 - 2;
        be::put(&mut d[0..2], len);
    } else {
        d[0] = (d.len() - 1) as u8;
    }
    Ok(d)
}

/// The command timeouts descriptor (SPC-4 6.35.4): length 0Ah, no
/// timeouts reported (zero means "not specified").
const TIMEOUTS: [u8; 12] = [0x00, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// REPORT SUPPORTED OPERATION CODES parameter data (SPC-4 6.35).
pub fn supported_opcodes(
    rctd: bool,
    options: u8,
    opcode: u8,
    service_action: u16,
    offer: Offered,
) -> Result<Vec<u8>, CommandError> {
    let offered = |i: &&OpInfo| offer.offers(i);
    if options == 0 {
        // All commands (6.35.2): command descriptors after a 4-byte header.
        let mut d = vec![0u8; 4];
        for i in cdb::OPCODES.iter().filter(offered) {
            let mut desc = [0u8; 8];
            desc[0] = i.opcode;
            if let Some(sa) = i.service_action {
                desc[3] = sa;
                desc[5] |= 0x01; // SERVACTV
            }
            if rctd {
                desc[5] |= 0x02; // CTDP
            }
            be::put(&mut desc[6..8], i.cdb_len() as u64);
            d.extend_from_slice(&desc);
            if rctd {
                d.extend_from_slice(&TIMEOUTS);
            }
        }
        let len = d.len() as u64 - 4;
        be::put(&mut d[0..4], len);
        return Ok(d);
    }
    // One command (6.35.3). Option 1 names an opcode without service
    // actions, option 2 one with them; the other combination is an error.
    let has_sa = cdb::has_service_actions(opcode);
    if (options == 1) == has_sa {
        return Err(CommandError::InvalidField(FieldPointer::bit(2, 2)));
    }
    let sa = if options == 2 {
        match u8::try_from(service_action) {
            Ok(sa) if sa <= 0x1F => Some(sa),
            _ => return Err(CommandError::InvalidField(FieldPointer::byte(4))),
        }
    } else {
        None
    };
    let mut d = vec![0u8; 4];
    if rctd {
        d[1] = 0x80; // CTDP
    }
    match cdb::find(opcode, sa).filter(|i| offered(i)) {
        Some(i) => {
            d[1] |= 0x03; // SUPPORT: supported in conformance with a standard
            be::put(&mut d[2..4], i.cdb_len() as u64);
            // The usage map, with the opcode in byte 0 and the service
            // action in its own field (SPC-4 6.35.3).
            let start = d.len();
            d.extend_from_slice(i.usage);
            d[start] = i.opcode;
            if let Some(sa) = i.service_action {
                d[start + 1] = (i.usage[1] & 0xE0) | sa;
            }
        }
        None => d[1] |= 0x01, // SUPPORT: not supported
    }
    if rctd {
        d.extend_from_slice(&TIMEOUTS);
    }
    Ok(d)
}
