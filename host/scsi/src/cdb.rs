//! CDB parsing, in two steps.
//!
//! 1. [`lookup`]: the operation code (and, for the service-action opcodes
//!    9Eh, A3h and 48h, the service action) selects an [`OpInfo`] from
//!    [`OPCODES`], which gives the CDB length and a usage mask: one byte
//!    per CDB byte with a bit set for every bit this target examines. The
//!    CDB length is checked before anything else is read, and any bit
//!    outside the mask (reserved, obsolete, vendor specific, LINK) is
//!    rejected with INVALID FIELD IN CDB pointing at it. The same mask is
//!    the CDB USAGE DATA of REPORT SUPPORTED OPERATION CODES (SPC-4
//!    6.35.3), so what we report and what we enforce cannot drift apart.
//! 2. [`parse`]: the typed [`Command`] with named fields, rejecting values
//!    of examined fields the target does not support (with the field
//!    pointer at the field's most significant bit, SPC-4 4.5.2.4.2).
//!
//! Checks that need the device geometry (LBA range, transfer limits) happen
//! when the command runs, not here.

use crate::backend::DiskInfo;
use crate::sense::{CommandError, FieldPointer};
use crate::units::{Blocks, Lba, be};

/// Operation codes (SPC-4 / SBC-3).
#[allow(missing_docs)]
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const FORMAT_UNIT: u8 = 0x04;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const SANITIZE: u8 = 0x48;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const EXTENDED_COPY: u8 = 0x83;
    pub const RECEIVE_COPY_RESULTS: u8 = 0x84;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;

    /// SERVICE ACTION IN (16) service action READ CAPACITY (16).
    pub const SA_READ_CAPACITY_16: u8 = 0x10;
    /// SERVICE ACTION IN (16) service action GET LBA STATUS.
    pub const SA_GET_LBA_STATUS: u8 = 0x12;
    /// SANITIZE service action OVERWRITE.
    pub const SA_SANITIZE_OVERWRITE: u8 = 0x01;
    /// SANITIZE service action BLOCK ERASE.
    pub const SA_SANITIZE_BLOCK_ERASE: u8 = 0x02;
    /// SANITIZE service action CRYPTOGRAPHIC ERASE (not implemented: no
    /// backstore here encrypts, so there is no key to change).
    pub const SA_SANITIZE_CRYPTO_ERASE: u8 = 0x03;
    /// SANITIZE service action EXIT FAILURE MODE.
    pub const SA_SANITIZE_EXIT_FAILURE_MODE: u8 = 0x1F;
    /// MAINTENANCE IN service action REPORT SUPPORTED OPERATION CODES.
    pub const SA_REPORT_SUPPORTED_OPCODES: u8 = 0x0C;
    /// THIRD-PARTY COPY OUT (83h) service action EXTENDED COPY(LID1).
    pub const SA_EXTENDED_COPY_LID1: u8 = 0x00;
    /// THIRD-PARTY COPY IN (84h) service action RECEIVE COPY STATUS(LID1)
    /// (SPC-3: RECEIVE COPY RESULTS, COPY STATUS).
    pub const SA_COPY_STATUS_LID1: u8 = 0x00;
    /// THIRD-PARTY COPY IN service action RECEIVE COPY OPERATING PARAMETERS.
    pub const SA_COPY_OPERATING_PARAMETERS: u8 = 0x03;
    /// THIRD-PARTY COPY IN service action RECEIVE COPY FAILURE DETAILS(LID1).
    pub const SA_COPY_FAILURE_DETAILS_LID1: u8 = 0x04;
}

/// Static description of one supported command.
#[derive(Debug)]
pub struct OpInfo {
    /// Operation code.
    pub opcode: u8,
    /// Service action (bits 4-0 of byte 1), for opcodes that have them.
    pub service_action: Option<u8>,
    /// Name from the standard.
    pub name: &'static str,
    /// CDB usage data: byte 0 is the opcode, then per byte the bits
    /// examined. Its length is the CDB length.
    pub usage: &'static [u8],
    /// What the backend must offer for the command to be offered.
    pub needs: Needs,
    /// Exempt from unit attention (SAM-5 5.14: INQUIRY, REPORT LUNS,
    /// REQUEST SENSE).
    pub ua_exempt: bool,
    /// Accesses the medium, so it is refused while a failed sanitize
    /// holds the medium (SBC-3 4.11). TEST UNIT READY counts: it reports
    /// whether medium access would succeed.
    pub medium: bool,
}

/// A capability a command depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Always offered.
    Nothing,
    /// Offered when the backend can discard (UNMAP).
    Discard,
    /// Offered when discarded blocks read back as zeros (LBPRZ): SANITIZE
    /// BLOCK ERASE, which must leave no data behind.
    DiscardZeroes,
}

/// What the device offers, as far as the opcode table cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offered {
    /// The backend can discard.
    pub discard: bool,
    /// Discarded blocks read back as zeros (LBPRZ).
    pub discard_zeroes: bool,
}

impl Offered {
    /// What a backend with `info` offers.
    pub fn of(info: &DiskInfo) -> Self {
        Self {
            discard: info.discard.is_some(),
            discard_zeroes: info.discard.is_some_and(|d| d.zeroes),
        }
    }

    /// Whether `op` is offered.
    pub fn offers(&self, op: &OpInfo) -> bool {
        match op.needs {
            Needs::Nothing => true,
            Needs::Discard => self.discard,
            Needs::DiscardZeroes => self.discard && self.discard_zeroes,
        }
    }
}

/// `true`: discard that reads back zeros; `false`: no discard.
impl From<bool> for Offered {
    fn from(discard: bool) -> Self {
        Self {
            discard,
            discard_zeroes: discard,
        }
    }
}

impl OpInfo {
    /// CDB length in bytes.
    pub fn cdb_len(&self) -> usize {
        self.usage.len()
    }
}

/// NACA (bit 2) of the CONTROL byte is examined (and refused); vendor bits
/// and LINK are not examined, so setting them is an invalid field.
const CT: u8 = 0x04;

const fn info(opcode: u8, name: &'static str, usage: &'static [u8]) -> OpInfo {
    OpInfo {
        opcode,
        service_action: None,
        name,
        usage,
        needs: Needs::Nothing,
        ua_exempt: false,
        medium: true,
    }
}

const fn exempt(mut i: OpInfo) -> OpInfo {
    i.ua_exempt = true;
    i.medium = false;
    i
}

/// A command that does not touch the medium.
const fn no_medium(mut i: OpInfo) -> OpInfo {
    i.medium = false;
    i
}

const fn sa(mut i: OpInfo, sa: u8) -> OpInfo {
    i.service_action = Some(sa);
    i
}

const fn discard(mut i: OpInfo) -> OpInfo {
    i.needs = Needs::Discard;
    i
}

const fn discard_zeroes(mut i: OpInfo) -> OpInfo {
    i.needs = Needs::DiscardZeroes;
    i
}

const F: u8 = 0xFF;

/// SANITIZE (SBC-3 5.21, table 85): IMMED, AUSE, SERVICE ACTION, bytes 2-6
/// reserved (ZNR of SBC-4 is not examined), PARAMETER LIST LENGTH.
const SANITIZE_USAGE: &[u8] = &[F, 0xBF, 0, 0, 0, 0, 0, F, F, CT];

/// Every command this target implements, in opcode order (the order of the
/// REPORT SUPPORTED OPERATION CODES listing).
pub static OPCODES: &[OpInfo] = TABLE;

/// Per opcode, the index of its first entry in [`OPCODES`] (`NONE` if the
/// opcode is not implemented): one array load per command instead of a
/// scan.
static INDEX: [u8; 256] = index();
const NONE: u8 = u8::MAX;

const fn index() -> [u8; 256] {
    let mut t = [NONE; 256];
    let mut i = TABLE.len();
    while i > 0 {
        i -= 1;
        t[TABLE[i].opcode as usize] = i as u8;
    }
    t
}

const TABLE: &[OpInfo] = &[
    info(op::TEST_UNIT_READY, "TEST UNIT READY", &[F, 0, 0, 0, 0, CT]),
    exempt(info(
        op::REQUEST_SENSE,
        "REQUEST SENSE",
        &[F, 0x01, 0, 0, F, CT],
    )),
    info(op::FORMAT_UNIT, "FORMAT UNIT", &[F, 0xFF, 0, 0, 0, CT]),
    info(op::READ_6, "READ (6)", &[F, 0x1F, F, F, F, CT]),
    info(op::WRITE_6, "WRITE (6)", &[F, 0x1F, F, F, F, CT]),
    exempt(info(op::INQUIRY, "INQUIRY", &[F, 0x01, F, F, F, CT])),
    no_medium(info(
        op::MODE_SELECT_6,
        "MODE SELECT (6)",
        &[F, 0x11, 0, 0, F, CT],
    )),
    no_medium(info(
        op::MODE_SENSE_6,
        "MODE SENSE (6)",
        &[F, 0x08, F, F, F, CT],
    )),
    no_medium(info(
        op::START_STOP_UNIT,
        "START STOP UNIT",
        &[F, 0x01, 0, 0x0F, 0xF7, CT],
    )),
    no_medium(info(
        op::PREVENT_ALLOW_MEDIUM_REMOVAL,
        "PREVENT ALLOW MEDIUM REMOVAL",
        &[F, 0, 0, 0, 0x03, CT],
    )),
    no_medium(info(
        op::READ_CAPACITY_10,
        "READ CAPACITY (10)",
        &[F, 0, F, F, F, F, 0, 0, 0x01, CT],
    )),
    info(
        op::READ_10,
        "READ (10)",
        &[F, 0xFE, F, F, F, F, 0x1F, F, F, CT],
    ),
    info(
        op::WRITE_10,
        "WRITE (10)",
        &[F, 0xFA, F, F, F, F, 0x1F, F, F, CT],
    ),
    info(
        op::WRITE_AND_VERIFY_10,
        "WRITE AND VERIFY (10)",
        &[F, 0xF2, F, F, F, F, 0x1F, F, F, CT],
    ),
    info(
        op::VERIFY_10,
        "VERIFY (10)",
        &[F, 0xF6, F, F, F, F, 0x1F, F, F, CT],
    ),
    info(
        op::PRE_FETCH_10,
        "PRE-FETCH (10)",
        &[F, 0x02, F, F, F, F, 0x1F, F, F, CT],
    ),
    info(
        op::SYNCHRONIZE_CACHE_10,
        "SYNCHRONIZE CACHE (10)",
        &[F, 0x06, F, F, F, F, 0x1F, F, F, CT],
    ),
    info(
        op::READ_DEFECT_DATA_10,
        "READ DEFECT DATA (10)",
        &[F, 0, 0x1F, 0, 0, 0, 0, F, F, CT],
    ),
    info(
        op::WRITE_SAME_10,
        "WRITE SAME (10)",
        &[F, 0xF8, F, F, F, F, 0x1F, F, F, CT],
    ),
    discard(info(
        op::UNMAP,
        "UNMAP",
        &[F, 0x01, 0, 0, 0, 0, 0x1F, F, F, CT],
    )),
    // CRYPTOGRAPHIC ERASE (03h) is absent: refused as an unsupported
    // service action, INVALID FIELD IN CDB at the SERVICE ACTION field.
    sa(
        no_medium(info(op::SANITIZE, "SANITIZE", SANITIZE_USAGE)),
        op::SA_SANITIZE_OVERWRITE,
    ),
    sa(
        discard_zeroes(no_medium(info(op::SANITIZE, "SANITIZE", SANITIZE_USAGE))),
        op::SA_SANITIZE_BLOCK_ERASE,
    ),
    sa(
        no_medium(info(op::SANITIZE, "SANITIZE", SANITIZE_USAGE)),
        op::SA_SANITIZE_EXIT_FAILURE_MODE,
    ),
    no_medium(info(
        op::MODE_SELECT_10,
        "MODE SELECT (10)",
        &[F, 0x11, 0, 0, 0, 0, 0, F, F, CT],
    )),
    no_medium(info(
        op::MODE_SENSE_10,
        "MODE SENSE (10)",
        &[F, 0x18, F, F, 0, 0, 0, F, F, CT],
    )),
    sa(
        info(
            op::EXTENDED_COPY,
            "EXTENDED COPY(LID1)",
            &[F, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, CT],
        ),
        op::SA_EXTENDED_COPY_LID1,
    ),
    sa(
        no_medium(info(
            op::RECEIVE_COPY_RESULTS,
            "RECEIVE COPY STATUS(LID1)",
            &[F, 0x1F, F, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, CT],
        )),
        op::SA_COPY_STATUS_LID1,
    ),
    sa(
        no_medium(info(
            op::RECEIVE_COPY_RESULTS,
            "RECEIVE COPY OPERATING PARAMETERS",
            &[F, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, CT],
        )),
        op::SA_COPY_OPERATING_PARAMETERS,
    ),
    sa(
        no_medium(info(
            op::RECEIVE_COPY_RESULTS,
            "RECEIVE COPY FAILURE DETAILS(LID1)",
            &[F, 0x1F, F, 0, 0, 0, 0, 0, 0, 0, F, F, F, F, 0, CT],
        )),
        op::SA_COPY_FAILURE_DETAILS_LID1,
    ),
    info(
        op::READ_16,
        "READ (16)",
        &[F, 0xFE, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::COMPARE_AND_WRITE,
        "COMPARE AND WRITE",
        &[F, 0xFA, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0x1F, CT],
    ),
    info(
        op::WRITE_16,
        "WRITE (16)",
        &[F, 0xFA, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::ORWRITE_16,
        "ORWRITE (16)",
        &[F, 0xF8, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::WRITE_AND_VERIFY_16,
        "WRITE AND VERIFY (16)",
        &[F, 0xF2, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::VERIFY_16,
        "VERIFY (16)",
        &[F, 0xF6, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::PRE_FETCH_16,
        "PRE-FETCH (16)",
        &[F, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::SYNCHRONIZE_CACHE_16,
        "SYNCHRONIZE CACHE (16)",
        &[F, 0x06, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::WRITE_SAME_16,
        "WRITE SAME (16)",
        &[F, 0xF9, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::WRITE_ATOMIC_16,
        "WRITE ATOMIC (16)",
        &[F, 0xF8, F, F, F, F, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    sa(
        no_medium(info(
            op::SERVICE_ACTION_IN_16,
            "READ CAPACITY (16)",
            &[F, 0x1F, F, F, F, F, F, F, F, F, F, F, F, F, 0x01, CT],
        )),
        op::SA_READ_CAPACITY_16,
    ),
    // SBC-3 5.6: byte 14 is reserved (SBC-4's REPORT TYPE is not examined).
    sa(
        info(
            op::SERVICE_ACTION_IN_16,
            "GET LBA STATUS",
            &[F, 0x1F, F, F, F, F, F, F, F, F, F, F, F, F, 0, CT],
        ),
        op::SA_GET_LBA_STATUS,
    ),
    exempt(info(
        op::REPORT_LUNS,
        "REPORT LUNS",
        &[F, 0, F, 0, 0, 0, F, F, F, F, 0, CT],
    )),
    sa(
        no_medium(info(
            op::MAINTENANCE_IN,
            "REPORT SUPPORTED OPERATION CODES",
            &[F, 0x1F, 0x87, F, F, F, F, F, F, F, 0, CT],
        )),
        op::SA_REPORT_SUPPORTED_OPCODES,
    ),
    info(
        op::READ_12,
        "READ (12)",
        &[F, 0xFE, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::WRITE_12,
        "WRITE (12)",
        &[F, 0xFA, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::WRITE_AND_VERIFY_12,
        "WRITE AND VERIFY (12)",
        &[F, 0xF2, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::VERIFY_12,
        "VERIFY (12)",
        &[F, 0xF6, F, F, F, F, F, F, F, F, 0x1F, CT],
    ),
    info(
        op::READ_DEFECT_DATA_12,
        "READ DEFECT DATA (12)",
        &[F, 0x1F, F, F, F, F, F, F, F, F, 0, CT],
    ),
];

/// Whether `opcode` selects its command by service action (SPC-4 4.2.5.1;
/// SANITIZE's SERVICE ACTION field is in the same place, SBC-3 5.21).
pub fn has_service_actions(opcode: u8) -> bool {
    matches!(
        opcode,
        op::SERVICE_ACTION_IN_16
            | op::MAINTENANCE_IN
            | op::SANITIZE
            | op::EXTENDED_COPY
            | op::RECEIVE_COPY_RESULTS
    )
}

/// Whether `opcode` still runs while a sanitize operation is in progress
/// (SBC-3 4.11): INQUIRY, REPORT LUNS and REQUEST SENSE. Everything else is
/// refused with SANITIZE IN PROGRESS, valid CDB or not.
pub fn allowed_during_sanitize(opcode: u8) -> bool {
    matches!(opcode, op::INQUIRY | op::REPORT_LUNS | op::REQUEST_SENSE)
}

/// Find the table entry for `opcode` / `service_action`.
pub fn find(opcode: u8, service_action: Option<u8>) -> Option<&'static OpInfo> {
    let first = usize::from(INDEX[usize::from(opcode)]);
    OPCODES
        .get(first..)?
        .iter()
        .take_while(|i| i.opcode == opcode)
        .find(|i| i.service_action == service_action)
}

/// What a command moves, for a transport's per-device counters: the
/// READ and WRITE families (WRITE AND VERIFY counts as a write); everything
/// else, data or not, is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoKind {
    /// READ (6), (10), (12), (16).
    Read,
    /// WRITE (6), (10), (12), (16), WRITE AND VERIFY (10), (16).
    Write,
    /// Any other command.
    #[default]
    Other,
}

/// The [`IoKind`] of `opcode`.
pub fn io_kind(opcode: u8) -> IoKind {
    match opcode {
        0x08 | 0x28 | 0xa8 | 0x88 => IoKind::Read,
        0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0x8e => IoKind::Write,
        _ => IoKind::Other,
    }
}

/// Whether `opcode` is exempt from unit attention (SAM-5 5.14).
pub fn ua_exempt(opcode: u8) -> bool {
    OPCODES
        .get(usize::from(INDEX[usize::from(opcode)]))
        .is_some_and(|i| i.opcode == opcode && i.ua_exempt)
}

/// Step one: the table entry for `cdb`, with its length and usage mask
/// checked. `offered` says which capability-dependent commands are offered
/// (`true`/`false` for discard with or without zeroing, see [`Offered`]).
pub fn lookup(cdb: &[u8], offered: impl Into<Offered>) -> Result<&'static OpInfo, CommandError> {
    let offered = offered.into();
    let &opcode = cdb.first().ok_or(CommandError::EmptyCdb)?;
    let service_action = if has_service_actions(opcode) {
        // The service action lives in byte 1; a CDB without it is short.
        let b1 = *cdb.get(1).ok_or(CommandError::CdbTooShort {
            len: cdb.len(),
            needed: 2,
        })?;
        Some(b1 & 0x1F)
    } else {
        None
    };
    let info = match find(opcode, service_action) {
        Some(i) if offered.offers(i) => i,
        // SPC-4 4.2.5.1: an unsupported service action is an invalid field.
        _ if service_action.is_some() && INDEX[usize::from(opcode)] != NONE => {
            return Err(CommandError::InvalidField(FieldPointer::bit(1, 4)));
        }
        _ => return Err(CommandError::InvalidOpcode { opcode }),
    };
    if cdb.len() < info.cdb_len() {
        return Err(CommandError::CdbTooShort {
            len: cdb.len(),
            needed: info.cdb_len(),
        });
    }
    for (i, (&b, &mask)) in cdb.iter().zip(info.usage).enumerate().skip(1) {
        let bad = b & !mask;
        if bad != 0 {
            let bit = 7 - bad.leading_zeros() as u8;
            return Err(CommandError::InvalidField(FieldPointer::bit(i as u16, bit)));
        }
    }
    let control = info.cdb_len() - 1;
    if cdb[control] & 0x04 != 0 {
        // SAM-5 5.9: NACA set and ACA not supported.
        return Err(CommandError::InvalidField(FieldPointer::bit(
            control as u16,
            2,
        )));
    }
    Ok(info)
}

/// A contiguous range of blocks named by a CDB, with where its length field
/// is (for field pointers when the length is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRange {
    /// First block.
    pub lba: Lba,
    /// Number of blocks.
    pub blocks: Blocks,
    /// CDB byte of the length field.
    pub len_field: u16,
}

/// PC field of MODE SENSE (SPC-4 6.11.1, table 148).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageControl {
    /// Current values.
    Current,
    /// Changeable-bits mask.
    Changeable,
    /// Default values.
    Default,
}

/// BYTCHK of VERIFY (SBC-3 5.29, table 80).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteCheck {
    /// Medium verification only: no data-out.
    None,
    /// Compare every block with the data-out.
    Full,
    /// Compare every block with the single block of data-out.
    SingleBlock,
}

/// SERVICE ACTION of SANITIZE (SBC-3 5.21, table 86), those implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanitizeAction {
    /// OVERWRITE: write a pattern over every block (parameter list).
    Overwrite,
    /// BLOCK ERASE: deallocate every block (discard that reads as zeros).
    BlockErase,
    /// EXIT FAILURE MODE: leave the failure mode of a sanitize that failed
    /// and had AUSE set.
    ExitFailureMode,
}

/// A parsed CDB. Fields are named as in the standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// TEST UNIT READY (SPC-4 6.47).
    TestUnitReady,
    /// REQUEST SENSE (SPC-4 6.39).
    RequestSense {
        /// DESC: descriptor format requested.
        desc: bool,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// INQUIRY (SPC-4 6.4).
    Inquiry {
        /// EVPD.
        evpd: bool,
        /// PAGE CODE.
        page: u8,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// REPORT LUNS (SPC-4 6.33).
    ReportLuns {
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// READ CAPACITY (10) (SBC-3 5.15).
    ReadCapacity10,
    /// READ CAPACITY (16) (SBC-3 5.16).
    ReadCapacity16 {
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// MODE SENSE (6) / (10) (SPC-4 6.11, 6.12).
    ModeSense {
        /// The 10-byte form (8-byte header).
        ten: bool,
        /// DBD: no block descriptors.
        dbd: bool,
        /// LLBAA: long LBA block descriptors allowed (10 only).
        llbaa: bool,
        /// PC.
        pc: PageControl,
        /// PAGE CODE.
        page: u8,
        /// SUBPAGE CODE.
        subpage: u8,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// MODE SELECT (6) / (10) (SPC-4 6.9, 6.10).
    ModeSelect {
        /// The 10-byte form (8-byte header).
        ten: bool,
        /// PARAMETER LIST LENGTH.
        param_len: u32,
    },
    /// READ (6/10/12/16) (SBC-3 5.7-5.10).
    Read {
        /// Blocks to read.
        range: BlockRange,
    },
    /// WRITE (6/10/12/16) (SBC-3 5.31-5.34).
    Write {
        /// Blocks to write.
        range: BlockRange,
        /// FUA.
        fua: bool,
    },
    /// VERIFY (10/12/16) (SBC-3 5.29, 5.30; the 12-byte form has the same
    /// fields with a 32-bit length).
    Verify {
        /// Blocks to verify.
        range: BlockRange,
        /// BYTCHK.
        bytchk: ByteCheck,
    },
    /// WRITE AND VERIFY (10/12/16) (SBC-3 5.36, 5.37; the 12-byte form has
    /// the same fields with a 32-bit length).
    WriteAndVerify {
        /// Blocks to write.
        range: BlockRange,
        /// BYTCHK.
        bytchk: bool,
    },
    /// SYNCHRONIZE CACHE (10/16) (SBC-3 5.22, 5.23).
    SynchronizeCache {
        /// Range (zero blocks: to the end).
        range: BlockRange,
    },
    /// PRE-FETCH (10/16) (SBC-3): a hint; IMMED is accepted and changes
    /// nothing, since no data moves.
    PreFetch {
        /// Range (zero blocks: from the LBA to the last block).
        range: BlockRange,
    },
    /// WRITE SAME (10/16) (SBC-3 5.41, 5.42).
    WriteSame {
        /// Blocks to write.
        range: BlockRange,
        /// UNMAP: the blocks may be deallocated.
        unmap: bool,
        /// NDOB: no data-out buffer, write zeros (16 only).
        ndob: bool,
    },
    /// UNMAP (SBC-3 5.28).
    Unmap {
        /// PARAMETER LIST LENGTH.
        param_len: u32,
    },
    /// COMPARE AND WRITE (SBC-3 5.2).
    CompareAndWrite {
        /// Blocks to compare, then write.
        range: BlockRange,
        /// FUA.
        fua: bool,
    },
    /// ORWRITE (16) (SBC-3, SBC-4): OR the data-out into the blocks.
    OrWrite {
        /// Blocks to read, OR and write.
        range: BlockRange,
        /// FUA.
        fua: bool,
    },
    /// WRITE ATOMIC (16) (SBC-4): one atomic write operation (an ATOMIC
    /// BOUNDARY other than zero is refused: MAXIMUM ATOMIC BOUNDARY SIZE is
    /// zero).
    WriteAtomic {
        /// Blocks to write (TRANSFER LENGTH is two bytes, at byte 12).
        range: BlockRange,
        /// FUA.
        fua: bool,
    },
    /// START STOP UNIT (SBC-3 5.25).
    StartStopUnit {
        /// START.
        start: bool,
        /// NO_FLUSH.
        no_flush: bool,
    },
    /// PREVENT ALLOW MEDIUM REMOVAL (SBC-3 5.5).
    PreventAllowMediumRemoval {
        /// PREVENT (0 or 1).
        prevent: bool,
    },
    /// FORMAT UNIT without a parameter list (SBC-3 5.3).
    FormatUnit,
    /// READ DEFECT DATA (10) / (12) (SBC-3; the ADDRESS DESCRIPTOR INDEX of
    /// the 12-byte form, SBC-4, is accepted and, the list being empty,
    /// changes nothing).
    ReadDefectData {
        /// The 12-byte form (8-byte header).
        twelve: bool,
        /// REQ_PLIST.
        plist: bool,
        /// REQ_GLIST.
        glist: bool,
        /// DEFECT LIST FORMAT (000b-110b; 111b is refused).
        format: u8,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// GET LBA STATUS (SBC-3 5.6).
    GetLbaStatus {
        /// STARTING LOGICAL BLOCK ADDRESS.
        lba: Lba,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// SANITIZE (SBC-3 5.21).
    Sanitize {
        /// SERVICE ACTION.
        action: SanitizeAction,
        /// IMMED: return status once the CDB and parameter list are valid.
        immed: bool,
        /// AUSE: allow EXIT FAILURE MODE if this sanitize fails.
        ause: bool,
        /// PARAMETER LIST LENGTH (zero except for OVERWRITE).
        param_len: u16,
    },
    /// EXTENDED COPY(LID1) (SPC-4 6.3; 83h service action 00h, the SPC-3
    /// EXTENDED COPY whose byte 1 was reserved).
    ExtendedCopy {
        /// PARAMETER LIST LENGTH.
        param_len: u32,
    },
    /// THIRD-PARTY COPY IN (84h, SPC-3 RECEIVE COPY RESULTS): RECEIVE COPY
    /// STATUS(LID1), OPERATING PARAMETERS or FAILURE DETAILS(LID1)
    /// (SPC-4).
    ReceiveCopyResults {
        /// SERVICE ACTION.
        service_action: u8,
        /// LIST IDENTIFIER (zero for OPERATING PARAMETERS).
        list_id: u8,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
    /// REPORT SUPPORTED OPERATION CODES (SPC-4 6.35).
    ReportSupportedOpcodes {
        /// RCTD: include command timeouts descriptors.
        rctd: bool,
        /// REPORTING OPTIONS.
        options: u8,
        /// REQUESTED OPERATION CODE.
        opcode: u8,
        /// REQUESTED SERVICE ACTION.
        service_action: u16,
        /// ALLOCATION LENGTH.
        alloc: u32,
    },
}

fn u(cdb: &[u8], at: usize, len: usize) -> u64 {
    be::get(&cdb[at..at + len])
}

fn range(cdb: &[u8], lba_at: usize, lba_len: usize, len_at: usize, len_len: usize) -> BlockRange {
    BlockRange {
        lba: Lba(u(cdb, lba_at, lba_len)),
        blocks: Blocks(u(cdb, len_at, len_len)),
        len_field: len_at as u16,
    }
}

fn bit(cdb: &[u8], byte: usize, bit: u8) -> bool {
    cdb[byte] & (1 << bit) != 0
}

/// A field that must be zero (RDPROTECT, WRPROTECT, VRPROTECT: no
/// protection information on this target) is not.
fn must_be_zero(cdb: &[u8], byte: usize, mask: u8, msb: u8) -> Result<(), CommandError> {
    if cdb[byte] & mask != 0 {
        return Err(CommandError::InvalidField(FieldPointer::bit(
            byte as u16,
            msb,
        )));
    }
    Ok(())
}

/// Step two: the typed command. `cdb` must have passed [`lookup`].
pub fn parse_with(info: &OpInfo, cdb: &[u8]) -> Result<Command, CommandError> {
    let protect = |c: &[u8]| must_be_zero(c, 1, 0xE0, 7);
    let cmd = match info.opcode {
        op::TEST_UNIT_READY => Command::TestUnitReady,
        op::REQUEST_SENSE => Command::RequestSense {
            desc: bit(cdb, 1, 0),
            alloc: cdb[4].into(),
        },
        op::INQUIRY => {
            let evpd = bit(cdb, 1, 0);
            // SPC-4 6.4.1: PAGE CODE must be zero when EVPD is zero.
            if !evpd && cdb[2] != 0 {
                return Err(CommandError::InvalidField(FieldPointer::byte(2)));
            }
            Command::Inquiry {
                evpd,
                page: cdb[2],
                alloc: u(cdb, 3, 2) as u32,
            }
        }
        op::REPORT_LUNS => {
            // SPC-4 6.33: SELECT REPORT 00h, 01h, 02h.
            if cdb[2] > 2 {
                return Err(CommandError::InvalidField(FieldPointer::byte(2)));
            }
            Command::ReportLuns {
                alloc: u(cdb, 6, 4) as u32,
            }
        }
        op::READ_CAPACITY_10 => {
            // SBC-3 5.15: with PMI zero the LBA field must be zero.
            if !bit(cdb, 8, 0) && u(cdb, 2, 4) != 0 {
                return Err(CommandError::InvalidField(FieldPointer::byte(2)));
            }
            Command::ReadCapacity10
        }
        op::SERVICE_ACTION_IN_16 if info.service_action == Some(op::SA_GET_LBA_STATUS) => {
            Command::GetLbaStatus {
                lba: Lba(u(cdb, 2, 8)),
                alloc: u(cdb, 10, 4) as u32,
            }
        }
        op::SERVICE_ACTION_IN_16 => {
            if !bit(cdb, 14, 0) && u(cdb, 2, 8) != 0 {
                return Err(CommandError::InvalidField(FieldPointer::byte(2)));
            }
            Command::ReadCapacity16 {
                alloc: u(cdb, 10, 4) as u32,
            }
        }
        op::SANITIZE => {
            let action = match info.service_action {
                Some(op::SA_SANITIZE_OVERWRITE) => SanitizeAction::Overwrite,
                Some(op::SA_SANITIZE_BLOCK_ERASE) => SanitizeAction::BlockErase,
                Some(op::SA_SANITIZE_EXIT_FAILURE_MODE) => SanitizeAction::ExitFailureMode,
                _ => return Err(CommandError::InvalidField(FieldPointer::bit(1, 4))),
            };
            let param_len = u(cdb, 7, 2) as u16;
            // SBC-3 5.21: OVERWRITE needs a parameter list, the others
            // take none.
            if (action == SanitizeAction::Overwrite) != (param_len != 0) {
                return Err(CommandError::InvalidField(FieldPointer::byte(7)));
            }
            Command::Sanitize {
                action,
                immed: bit(cdb, 1, 7),
                ause: bit(cdb, 1, 5),
                param_len,
            }
        }
        op::MODE_SENSE_6 | op::MODE_SENSE_10 => {
            let ten = info.opcode == op::MODE_SENSE_10;
            let pc = match cdb[2] >> 6 {
                0 => PageControl::Current,
                1 => PageControl::Changeable,
                2 => PageControl::Default,
                _ => return Err(CommandError::SavingNotSupported),
            };
            Command::ModeSense {
                ten,
                dbd: bit(cdb, 1, 3),
                llbaa: ten && bit(cdb, 1, 4),
                pc,
                page: cdb[2] & 0x3F,
                subpage: cdb[3],
                alloc: if ten { u(cdb, 7, 2) } else { u(cdb, 4, 1) } as u32,
            }
        }
        op::MODE_SELECT_6 | op::MODE_SELECT_10 => {
            // SPC-4 6.9: only page-format parameters; nothing can be saved.
            if !bit(cdb, 1, 4) {
                return Err(CommandError::InvalidField(FieldPointer::bit(1, 4)));
            }
            if bit(cdb, 1, 0) {
                return Err(CommandError::InvalidField(FieldPointer::bit(1, 0)));
            }
            let ten = info.opcode == op::MODE_SELECT_10;
            Command::ModeSelect {
                ten,
                param_len: if ten { u(cdb, 7, 2) } else { u(cdb, 4, 1) } as u32,
            }
        }
        op::READ_6 | op::WRITE_6 => {
            // SBC-3 5.7 / 5.31: TRANSFER LENGTH 0 means 256 blocks.
            let blocks = match cdb[4] {
                0 => 256,
                n => u64::from(n),
            };
            let range = BlockRange {
                lba: Lba(u(cdb, 1, 3) & 0x1F_FFFF),
                blocks: Blocks(blocks),
                len_field: 4,
            };
            if info.opcode == op::READ_6 {
                Command::Read { range }
            } else {
                Command::Write { range, fua: false }
            }
        }
        op::READ_10 | op::READ_12 | op::READ_16 => {
            protect(cdb)?;
            Command::Read {
                range: rw_range(info.opcode, cdb),
            }
        }
        op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => {
            protect(cdb)?;
            Command::Write {
                range: rw_range(info.opcode, cdb),
                fua: bit(cdb, 1, 3),
            }
        }
        op::VERIFY_10 | op::VERIFY_12 | op::VERIFY_16 => {
            protect(cdb)?;
            let bytchk = match (cdb[1] >> 1) & 0x03 {
                0 => ByteCheck::None,
                1 => ByteCheck::Full,
                3 => ByteCheck::SingleBlock,
                _ => return Err(CommandError::InvalidField(FieldPointer::bit(1, 2))),
            };
            Command::Verify {
                range: rw_range(info.opcode, cdb),
                bytchk,
            }
        }
        op::WRITE_AND_VERIFY_10 | op::WRITE_AND_VERIFY_12 | op::WRITE_AND_VERIFY_16 => {
            protect(cdb)?;
            Command::WriteAndVerify {
                range: rw_range(info.opcode, cdb),
                bytchk: bit(cdb, 1, 1),
            }
        }
        op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => Command::SynchronizeCache {
            range: rw_range(info.opcode, cdb),
        },
        op::PRE_FETCH_10 | op::PRE_FETCH_16 => Command::PreFetch {
            range: rw_range(info.opcode, cdb),
        },
        op::WRITE_SAME_10 | op::WRITE_SAME_16 => {
            protect(cdb)?;
            // ANCHOR with ANC_SUP zero in the LBP VPD page (SBC-3 5.41).
            if bit(cdb, 1, 4) {
                return Err(CommandError::InvalidField(FieldPointer::bit(1, 4)));
            }
            Command::WriteSame {
                range: rw_range(info.opcode, cdb),
                unmap: bit(cdb, 1, 3),
                ndob: info.opcode == op::WRITE_SAME_16 && bit(cdb, 1, 0),
            }
        }
        op::UNMAP => {
            if bit(cdb, 1, 0) {
                return Err(CommandError::InvalidField(FieldPointer::bit(1, 0)));
            }
            Command::Unmap {
                param_len: u(cdb, 7, 2) as u32,
            }
        }
        op::COMPARE_AND_WRITE => {
            protect(cdb)?;
            Command::CompareAndWrite {
                range: range(cdb, 2, 8, 13, 1),
                fua: bit(cdb, 1, 3),
            }
        }
        op::ORWRITE_16 => {
            // ORPROTECT: no protection information here. (BMOP and
            // PREVIOUS GENERATION PROCESSING exist only in ORWRITE (32).)
            protect(cdb)?;
            Command::OrWrite {
                range: rw_range(info.opcode, cdb),
                fua: bit(cdb, 1, 3),
            }
        }
        op::WRITE_ATOMIC_16 => {
            protect(cdb)?;
            // SBC-4 atomic writes: a non-zero ATOMIC BOUNDARY above the
            // MAXIMUM ATOMIC BOUNDARY SIZE (0 here) is an invalid field.
            if u(cdb, 10, 2) != 0 {
                return Err(CommandError::InvalidField(FieldPointer::byte(10)));
            }
            Command::WriteAtomic {
                range: range(cdb, 2, 8, 12, 2),
                fua: bit(cdb, 1, 3),
            }
        }
        op::START_STOP_UNIT => {
            // No power conditions; no removable medium to eject (RMB=0).
            if cdb[4] & 0xF0 != 0 {
                return Err(CommandError::InvalidField(FieldPointer::bit(4, 7)));
            }
            if cdb[3] & 0x0F != 0 {
                return Err(CommandError::InvalidField(FieldPointer::bit(3, 3)));
            }
            if bit(cdb, 4, 1) {
                return Err(CommandError::InvalidField(FieldPointer::bit(4, 1)));
            }
            Command::StartStopUnit {
                start: bit(cdb, 4, 0),
                no_flush: bit(cdb, 4, 2),
            }
        }
        op::PREVENT_ALLOW_MEDIUM_REMOVAL => {
            // SBC-3 5.5: values 10b and 11b are obsolete.
            if cdb[4] & 0x02 != 0 {
                return Err(CommandError::InvalidField(FieldPointer::bit(4, 1)));
            }
            Command::PreventAllowMediumRemoval {
                prevent: bit(cdb, 4, 0),
            }
        }
        op::FORMAT_UNIT => {
            // No protection information, no parameter list.
            if cdb[1] & 0xC0 != 0 {
                return Err(CommandError::InvalidField(FieldPointer::bit(1, 7)));
            }
            if bit(cdb, 1, 4) {
                return Err(CommandError::InvalidField(FieldPointer::bit(1, 4)));
            }
            Command::FormatUnit
        }
        op::READ_DEFECT_DATA_10 | op::READ_DEFECT_DATA_12 => {
            let twelve = info.opcode == op::READ_DEFECT_DATA_12;
            let at = if twelve { 1 } else { 2 };
            // SBC-3 address descriptor formats: 000b-101b defined, 110b
            // vendor specific, 111b reserved (SPC-4: a reserved code value
            // is an error).
            let format = cdb[at] & 0x07;
            if format == 0x07 {
                return Err(CommandError::InvalidField(FieldPointer::bit(at as u16, 2)));
            }
            Command::ReadDefectData {
                twelve,
                plist: bit(cdb, at, 4),
                glist: bit(cdb, at, 3),
                format,
                alloc: if twelve { u(cdb, 6, 4) } else { u(cdb, 7, 2) } as u32,
            }
        }
        op::EXTENDED_COPY => Command::ExtendedCopy {
            param_len: u(cdb, 10, 4) as u32,
        },
        op::RECEIVE_COPY_RESULTS => Command::ReceiveCopyResults {
            service_action: cdb[1] & 0x1F,
            list_id: cdb[2],
            alloc: u(cdb, 10, 4) as u32,
        },
        op::MAINTENANCE_IN => {
            let options = cdb[2] & 0x07;
            if options > 2 {
                return Err(CommandError::InvalidField(FieldPointer::bit(2, 2)));
            }
            Command::ReportSupportedOpcodes {
                rctd: bit(cdb, 2, 7),
                options,
                opcode: cdb[3],
                service_action: u(cdb, 4, 2) as u16,
                alloc: u(cdb, 6, 4) as u32,
            }
        }
        opcode => return Err(CommandError::InvalidOpcode { opcode }),
    };
    Ok(cmd)
}

/// LBA and length fields of the 10-, 12- and 16-byte block commands; the
/// group code fixes the layout (SBC-3 4.2.5.1).
fn rw_range(opcode: u8, cdb: &[u8]) -> BlockRange {
    match opcode >> 5 {
        4 => range(cdb, 2, 8, 10, 4),
        5 => range(cdb, 2, 4, 6, 4),
        _ => range(cdb, 2, 4, 7, 2),
    }
}

/// Both steps.
pub fn parse(
    cdb: &[u8],
    offered: impl Into<Offered>,
) -> Result<(&'static OpInfo, Command), CommandError> {
    let info = lookup(cdb, offered)?;
    Ok((info, parse_with(info, cdb)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in OPCODES.windows(2) {
            assert!(
                (w[0].opcode, w[0].service_action) < (w[1].opcode, w[1].service_action),
                "{} before {}",
                w[0].name,
                w[1].name
            );
        }
        for i in OPCODES {
            // SPC-4 4.2.5.1: the group code (top three bits) fixes the length.
            let expected = match i.opcode >> 5 {
                0 => 6,
                1 | 2 => 10,
                4 => 16,
                5 => 12,
                g => panic!("unexpected group {g}"),
            };
            assert_eq!(i.cdb_len(), expected, "{}", i.name);
            assert_eq!(i.usage[0], 0xFF);
        }
    }

    #[test]
    fn index_finds_every_entry_and_nothing_else() {
        for i in OPCODES {
            let found = find(i.opcode, i.service_action).unwrap();
            assert!(std::ptr::eq(found, i), "{}", i.name);
            assert_eq!(ua_exempt(i.opcode), i.ua_exempt);
        }
        let implemented: usize = (0..=255u8)
            .map(|op| {
                if has_service_actions(op) {
                    (0..32).filter(|&sa| find(op, Some(sa)).is_some()).count()
                } else {
                    usize::from(find(op, None).is_some())
                }
            })
            .sum();
        assert_eq!(implemented, OPCODES.len());
        assert!(find(0xFF, None).is_none());
        for i in OPCODES {
            assert_eq!(
                i.service_action.is_some(),
                has_service_actions(i.opcode),
                "{}",
                i.name
            );
        }
    }

    #[test]
    fn empty_cdb_is_an_error_not_a_panic() {
        assert_eq!(lookup(&[], true).unwrap_err(), CommandError::EmptyCdb);
    }

    #[test]
    fn short_cdb_is_rejected_before_fields_are_read() {
        assert_eq!(
            lookup(&[op::READ_16, 0, 0], true).unwrap_err(),
            CommandError::CdbTooShort { len: 3, needed: 16 }
        );
        assert_eq!(
            lookup(&[op::SERVICE_ACTION_IN_16], true).unwrap_err(),
            CommandError::CdbTooShort { len: 1, needed: 2 }
        );
    }

    #[test]
    fn unknown_opcode_and_service_action() {
        assert_eq!(
            lookup(&[0xC0, 0, 0, 0, 0, 0], true).unwrap_err(),
            CommandError::InvalidOpcode { opcode: 0xC0 }
        );
        let mut cdb = [0u8; 16];
        cdb[0] = op::SERVICE_ACTION_IN_16;
        cdb[1] = 0x11; // READ LONG (16): not implemented
        assert_eq!(
            lookup(&cdb, true).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(1, 4))
        );
    }

    #[test]
    fn block_erase_needs_discard_that_zeroes() {
        // Not offered: an unsupported service action, not an opcode.
        let cdb = [op::SANITIZE, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(lookup(&cdb, true).is_ok());
        let no_zeroes = Offered {
            discard: true,
            discard_zeroes: false,
        };
        for offered in [no_zeroes, Offered::default()] {
            assert_eq!(
                lookup(&cdb, offered).unwrap_err(),
                CommandError::InvalidField(FieldPointer::bit(1, 4))
            );
        }
        // CRYPTOGRAPHIC ERASE is never offered.
        let cdb = [op::SANITIZE, 0x03, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            lookup(&cdb, true).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(1, 4))
        );
    }

    #[test]
    fn sanitize_fields() {
        let cdb = [op::SANITIZE, 0xA1, 0, 0, 0, 0, 0, 0, 8, 0];
        assert_eq!(
            parse(&cdb, true).unwrap().1,
            Command::Sanitize {
                action: SanitizeAction::Overwrite,
                immed: true,
                ause: true,
                param_len: 8
            }
        );
        // OVERWRITE without a parameter list, BLOCK ERASE with one.
        for cdb in [
            [op::SANITIZE, 0x01, 0, 0, 0, 0, 0, 0, 0, 0],
            [op::SANITIZE, 0x02, 0, 0, 0, 0, 0, 0, 4, 0],
            [op::SANITIZE, 0x1F, 0, 0, 0, 0, 0, 1, 0, 0],
        ] {
            assert_eq!(
                parse(&cdb, true).unwrap_err(),
                CommandError::InvalidField(FieldPointer::byte(7))
            );
        }
        // Byte 1 bit 6 (SBC-4's ZNR) is reserved here.
        let cdb = [op::SANITIZE, 0x41, 0, 0, 0, 0, 0, 0, 8, 0];
        assert_eq!(
            lookup(&cdb, true).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(1, 6))
        );
    }

    #[test]
    fn get_lba_status_fields() {
        let mut cdb = [0u8; 16];
        cdb[0] = op::SERVICE_ACTION_IN_16;
        cdb[1] = op::SA_GET_LBA_STATUS;
        cdb[2..10].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        cdb[10..14].copy_from_slice(&24u32.to_be_bytes());
        assert_eq!(
            parse(&cdb, false).unwrap().1,
            Command::GetLbaStatus {
                lba: Lba(0x0102_0304_0506_0708),
                alloc: 24
            }
        );
        // SBC-4's REPORT TYPE (byte 14) is reserved in SBC-3.
        cdb[14] = 0x01;
        assert_eq!(
            lookup(&cdb, false).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(14, 0))
        );
    }

    #[test]
    fn unmap_is_unknown_without_discard() {
        let cdb = [op::UNMAP, 0, 0, 0, 0, 0, 0, 0, 24, 0];
        assert!(lookup(&cdb, true).is_ok());
        assert_eq!(
            lookup(&cdb, false).unwrap_err(),
            CommandError::InvalidOpcode { opcode: op::UNMAP }
        );
    }

    #[test]
    fn reserved_bit_points_at_its_byte_and_bit() {
        // WRITE (10) byte 1 bit 2 is reserved.
        let cdb = [op::WRITE_10, 0x04, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            lookup(&cdb, false).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(1, 2))
        );
        // NACA in the control byte.
        let cdb = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0x04];
        assert_eq!(
            lookup(&cdb, false).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(5, 2))
        );
        // LINK (obsolete) is not examined at all.
        let cdb = [op::TEST_UNIT_READY, 0, 0, 0, 0, 0x01];
        assert_eq!(
            lookup(&cdb, false).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(5, 0))
        );
    }

    #[test]
    fn protection_fields_point_at_their_msb() {
        let cdb = [op::READ_10, 0x20, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            parse(&cdb, false).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(1, 7))
        );
    }

    #[test]
    fn read_write_fields() {
        let (_, c) = parse(&[op::READ_6, 0x1F, 0xFF, 0xFE, 0, 0], false).unwrap();
        assert_eq!(
            c,
            Command::Read {
                range: BlockRange {
                    lba: Lba(0x1F_FFFE),
                    blocks: Blocks(256),
                    len_field: 4
                }
            }
        );
        let cdb = [op::WRITE_12, 0x08, 1, 2, 3, 4, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            parse(&cdb, false).unwrap().1,
            Command::Write {
                range: BlockRange {
                    lba: Lba(0x0102_0304),
                    blocks: Blocks(256),
                    len_field: 6
                },
                fua: true
            }
        );
        let mut cdb = [0u8; 16];
        cdb[0] = op::WRITE_16;
        cdb[2..10].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        cdb[10..14].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            parse(&cdb, false).unwrap().1,
            Command::Write {
                range: BlockRange {
                    lba: Lba(0x0102_0304_0506_0708),
                    blocks: Blocks(9),
                    len_field: 10
                },
                fua: false
            }
        );
    }

    #[test]
    fn verify_bytchk_10b_is_reserved() {
        let cdb = [op::VERIFY_10, 0x04, 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(
            parse(&cdb, false).unwrap_err(),
            CommandError::InvalidField(FieldPointer::bit(1, 2))
        );
        let cdb = [op::VERIFY_10, 0x06, 0, 0, 0, 0, 0, 0, 1, 0];
        assert!(matches!(
            parse(&cdb, false).unwrap().1,
            Command::Verify {
                bytchk: ByteCheck::SingleBlock,
                ..
            }
        ));
    }
}
