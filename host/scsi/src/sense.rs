//! Status, sense data, and the one table from errors to sense.
//!
//! Everything that ends a command with CHECK CONDITION is a
//! [`CommandError`]; [`CommandError::sense`] is the only place that turns
//! one into a sense key and additional sense code (SPC-4 4.5.6, table 28).
//! Sense bytes are built in fixed format (SPC-4 4.5.3) unless the caller
//! asks for descriptor format (SPC-4 4.5.2).

use crate::backend::{BackendError, BackendErrorKind, BackendOp};
use crate::buffer::BufferError;

/// SAM-5 status codes (SAM-5 5.3.1, table 34).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The command completed.
    Good = 0x00,
    /// Sense data describes why the command failed.
    CheckCondition = 0x02,
    /// The command completed and its condition was met: PRE-FETCH whose
    /// blocks fit the cache (SBC-3). Carries no sense, like GOOD.
    ConditionMet = 0x04,
    /// The logical unit is busy; retry later.
    Busy = 0x08,
    /// The task set is full.
    TaskSetFull = 0x28,
}

impl Status {
    /// The status byte on the wire.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Sense keys (SPC-4 4.5.6, table 27).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SenseKey {
    /// No specific sense key information.
    NoSense = 0x0,
    /// The logical unit is not accessible.
    NotReady = 0x2,
    /// Unrecovered error on the medium.
    MediumError = 0x3,
    /// Non-recoverable hardware (or target-internal) failure.
    HardwareError = 0x4,
    /// Illegal value in the CDB or parameter list.
    IllegalRequest = 0x5,
    /// A unit attention condition.
    UnitAttention = 0x6,
    /// The operation is blocked by write protection.
    DataProtect = 0x7,
    /// EXTENDED COPY stopped part way (SPC-4 4.5.6): the sense says at
    /// which segment.
    CopyAborted = 0xA,
    /// The device server aborted the command; the initiator may retry.
    AbortedCommand = 0xB,
    /// Source data did not match the data read from the medium.
    Miscompare = 0xE,
}

/// An additional sense code and its qualifier (SPC-4 4.5.6, table 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asc(pub u8, pub u8);

/// Named additional sense codes used by this target.
pub mod asc {
    use super::Asc;
    /// NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL_SENSE: Asc = Asc(0x00, 0x00);
    /// LOGICAL UNIT IS IN PROCESS OF BECOMING READY.
    pub const BECOMING_READY: Asc = Asc(0x04, 0x01);
    /// LOGICAL UNIT NOT READY, MANUAL INTERVENTION REQUIRED.
    pub const MANUAL_INTERVENTION: Asc = Asc(0x04, 0x03);
    /// LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
    pub const SANITIZE_IN_PROGRESS: Asc = Asc(0x04, 0x1B);
    /// OPERATION IN PROGRESS.
    pub const OPERATION_IN_PROGRESS: Asc = Asc(0x00, 0x16);
    /// THIRD PARTY DEVICE FAILURE.
    pub const THIRD_PARTY_DEVICE_FAILURE: Asc = Asc(0x0D, 0x01);
    /// COPY TARGET DEVICE NOT REACHABLE.
    pub const COPY_TARGET_DEVICE_NOT_REACHABLE: Asc = Asc(0x0D, 0x02);
    /// WRITE ERROR.
    pub const WRITE_ERROR: Asc = Asc(0x0C, 0x00);
    /// UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: Asc = Asc(0x11, 0x00);
    /// PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: Asc = Asc(0x1A, 0x00);
    /// MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE_DURING_VERIFY: Asc = Asc(0x1D, 0x00);
    /// INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPCODE: Asc = Asc(0x20, 0x00);
    /// LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Asc = Asc(0x21, 0x00);
    /// INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: Asc = Asc(0x24, 0x00);
    /// INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Asc = Asc(0x26, 0x00);
    /// TOO MANY TARGET DESCRIPTORS (SPC-4: CSCD descriptors).
    pub const TOO_MANY_TARGET_DESCRIPTORS: Asc = Asc(0x26, 0x06);
    /// UNSUPPORTED TARGET DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE: Asc = Asc(0x26, 0x07);
    /// TOO MANY SEGMENT DESCRIPTORS.
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Asc = Asc(0x26, 0x08);
    /// UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE.
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE: Asc = Asc(0x26, 0x09);
    /// UNEXPECTED INEXACT SEGMENT.
    pub const UNEXPECTED_INEXACT_SEGMENT: Asc = Asc(0x26, 0x0A);
    /// WRITE PROTECTED.
    pub const WRITE_PROTECTED: Asc = Asc(0x27, 0x00);
    /// SPACE ALLOCATION FAILED WRITE PROTECT.
    pub const SPACE_ALLOCATION_FAILED: Asc = Asc(0x27, 0x07);
    /// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: Asc = Asc(0x29, 0x00);
    /// BUS DEVICE RESET FUNCTION OCCURRED (LUN reset).
    pub const BUS_DEVICE_RESET: Asc = Asc(0x29, 0x03);
    /// MODE PARAMETERS CHANGED.
    pub const MODE_PARAMETERS_CHANGED: Asc = Asc(0x2A, 0x01);
    /// CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_DATA_CHANGED: Asc = Asc(0x2A, 0x09);
    /// SANITIZE COMMAND FAILED.
    pub const SANITIZE_COMMAND_FAILED: Asc = Asc(0x31, 0x03);
    /// SAVING PARAMETERS NOT SUPPORTED.
    pub const SAVING_PARAMETERS_NOT_SUPPORTED: Asc = Asc(0x39, 0x00);
    /// INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: Asc = Asc(0x44, 0x00);
    /// INSUFFICIENT RESOURCES.
    pub const INSUFFICIENT_RESOURCES: Asc = Asc(0x55, 0x03);
}

/// Where in the CDB or parameter list an invalid field is: the
/// sense-key-specific field pointer of SPC-4 4.5.2.4.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPointer {
    /// Byte offset of the field.
    pub byte: u16,
    /// Most significant bit of the field, when the field is not whole bytes.
    pub bit: Option<u8>,
}

impl FieldPointer {
    /// The whole byte(s) starting at `byte`.
    pub const fn byte(byte: u16) -> Self {
        Self { byte, bit: None }
    }
    /// A bit field whose most significant bit is `bit` of `byte`.
    pub const fn bit(byte: u16, bit: u8) -> Self {
        Self {
            byte,
            bit: Some(bit),
        }
    }
    /// The three sense-key-specific bytes: SKSV, C/D, BPV, bit pointer,
    /// field pointer (SPC-4 4.5.2.4.2, table 32).
    fn sks(self, in_cdb: bool) -> [u8; 3] {
        self.sks_with(if in_cdb { 0x40 } else { 0 })
    }
    /// The same bytes with `flag` in byte 0: C/D (40h) of a field pointer,
    /// or SD (20h) of a segment pointer (SPC-4 4.5.2.4.5).
    fn sks_with(self, flag: u8) -> [u8; 3] {
        let mut b0 = 0x80 | flag;
        if let Some(bit) = self.bit {
            b0 |= 0x08 | (bit & 0x07);
        }
        let [hi, lo] = self.byte.to_be_bytes();
        [b0, hi, lo]
    }
}

/// What a COPY ABORTED sense of EXTENDED COPY says besides its code
/// (SPC-4 6.3.x, errors detected while processing segment descriptors): the
/// segment being processed goes in bytes 3-4 of the COMMAND-SPECIFIC
/// INFORMATION field (bytes 1-2, the offsets of forwarded copy source and
/// destination sense, stay zero: none is forwarded), and an optional
/// segment pointer (SPC-4 4.5.2.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSense {
    /// Number of the segment descriptor, from zero.
    pub segment: u16,
    /// The field in error: relative to that segment descriptor when
    /// `in_segment` (SD = 1), otherwise to the start of the parameter list.
    pub pointer: Option<(FieldPointer, bool)>,
}

/// Why EXTENDED COPY stopped at a segment (sense key COPY ABORTED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyAbort {
    /// No logical unit this daemon serves has the CSCD's designator
    /// (COPY TARGET DEVICE NOT REACHABLE).
    Unreachable,
    /// Reading the source or writing the destination failed (THIRD PARTY
    /// DEVICE FAILURE).
    DeviceFailure,
    /// The segment's byte count is not a whole number of source and of
    /// destination blocks (UNEXPECTED INEXACT SEGMENT).
    InexactSegment,
}

/// Failures particular to the third-party copy commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyError {
    /// More CSCD descriptors than MAXIMUM CSCD DESCRIPTOR COUNT; the
    /// pointer is at CSCD DESCRIPTOR LIST LENGTH.
    TooManyCscds(FieldPointer),
    /// A CSCD descriptor type other than E4h.
    UnsupportedCscdType(FieldPointer),
    /// More segment descriptors than MAXIMUM SEGMENT DESCRIPTOR COUNT; the
    /// pointer is at SEGMENT DESCRIPTOR LIST LENGTH.
    TooManySegments(FieldPointer),
    /// A segment descriptor type other than 02h.
    UnsupportedSegmentType(FieldPointer),
    /// A segment's source or destination range lies past the last block;
    /// the pointer is at its LBA field in the parameter list.
    LbaOutOfRange(FieldPointer),
    /// A copy with this LIST IDENTIFIER is already running for this I_T
    /// nexus; the pointer is at LIST IDENTIFIER.
    OperationInProgress(FieldPointer),
    /// As many copies as TOTAL CONCURRENT COPIES are already running.
    InsufficientResources,
    /// COPY ABORTED at a segment. `residual` is the number of destination
    /// blocks of that segment not written, reported (with VALID) only when
    /// some of them were.
    Aborted {
        /// The reason (the additional sense code).
        reason: CopyAbort,
        /// Segment number and field pointer.
        at: SegmentSense,
        /// INFORMATION: destination blocks of the segment left unwritten.
        residual: Option<u64>,
    },
}

/// A unit attention condition (SAM-5 5.14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitAttention {
    /// The logical unit was attached (powered on) and this nexus has not
    /// been told yet.
    PowerOnReset,
    /// A LUN reset happened.
    LunReset,
    /// Another nexus changed mode parameters.
    ModeParametersChanged,
    /// The device was resized.
    CapacityDataChanged,
}

/// Why a command ended with CHECK CONDITION.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The CDB has no bytes at all.
    #[error("empty CDB")]
    EmptyCdb,
    /// Operation code (or service action of a command that has them)
    /// this target does not implement.
    #[error("unsupported operation code {opcode:#04x}")]
    InvalidOpcode {
        /// The operation code.
        opcode: u8,
    },
    /// The CDB is shorter than its operation code requires.
    #[error("CDB of {len} bytes is shorter than the {needed} its opcode needs")]
    CdbTooShort {
        /// Bytes received.
        len: usize,
        /// Bytes the opcode requires.
        needed: usize,
    },
    /// A CDB field holds a value this target does not accept.
    #[error("invalid field in CDB at {0:?}")]
    InvalidField(FieldPointer),
    /// A parameter list field holds a value this target does not accept.
    #[error("invalid field in parameter list at {0:?}")]
    InvalidParameter(FieldPointer),
    /// The parameter list is too short for what it claims to hold.
    #[error("parameter list length error")]
    ParameterListLength,
    /// LBA plus length lies past the last block.
    #[error("logical block address out of range")]
    LbaOutOfRange,
    /// MODE SELECT/SENSE asked for saved parameters, which are not kept.
    #[error("saving parameters is not supported")]
    SavingNotSupported,
    /// A write to a read-only device.
    #[error("device is write protected")]
    WriteProtected,
    /// COMPARE AND WRITE or VERIFY found different data; `offset` is the
    /// first differing byte of the data-out buffer.
    #[error("miscompare at data-out byte {offset}")]
    Miscompare {
        /// Offset into the data-out buffer.
        offset: u64,
    },
    /// A pending unit attention condition.
    #[error("unit attention {0:?}")]
    UnitAttention(UnitAttention),
    /// A sanitize operation is running (SBC-3 4.11): every command but
    /// INQUIRY, REPORT LUNS and REQUEST SENSE is refused with its progress.
    #[error("sanitize in progress ({progress}/65536)")]
    SanitizeInProgress {
        /// PROGRESS INDICATION: the fraction done, of 65536.
        progress: u16,
    },
    /// The last sanitize operation failed (or was interrupted): commands
    /// that access the medium are refused until a sanitize succeeds or
    /// EXIT FAILURE MODE is allowed (SBC-3 4.11); also the status of the
    /// SANITIZE command whose operation failed.
    #[error("sanitize failed; the medium is not accessible")]
    SanitizeFailed,
    /// The backend failed.
    #[error("{op:?}: {err}")]
    Backend {
        /// What the target asked of the backend.
        op: BackendOp,
        /// What the backend reported.
        err: BackendError,
    },
    /// The command's data buffer could not be accessed.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// EXTENDED COPY or RECEIVE COPY RESULTS refused or stopped.
    #[error("third-party copy: {0:?}")]
    Copy(CopyError),
}

/// A sense key, additional sense code, and the optional fields that go with
/// them; formatted by [`Sense::to_fixed`] / [`Sense::to_descriptor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    /// Sense key.
    pub key: SenseKey,
    /// Additional sense code and qualifier.
    pub asc: Asc,
    /// INFORMATION field (an LBA or an offset), when valid.
    pub info: Option<u64>,
    /// Field pointer and whether it points into the CDB (`true`) or the
    /// parameter list.
    pub field: Option<(FieldPointer, bool)>,
    /// PROGRESS INDICATION (SPC-4 4.5.2.4.3), the other use of the
    /// sense-key-specific bytes; never set together with `field`.
    pub progress: Option<u16>,
    /// COPY ABORTED by EXTENDED COPY: COMMAND-SPECIFIC INFORMATION and
    /// segment pointer.
    pub segment: Option<SegmentSense>,
}

/// The largest sense we produce (descriptor format with an information, a
/// command-specific information and a sense-key-specific descriptor:
/// 8 + 12 + 12 + 8 bytes).
pub const MAX_SENSE_LEN: usize = 40;

/// Formatted sense bytes, without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenseBytes {
    bytes: [u8; MAX_SENSE_LEN],
    len: u8,
}

impl SenseBytes {
    /// No sense data.
    pub const EMPTY: Self = Self {
        bytes: [0; MAX_SENSE_LEN],
        len: 0,
    };
    /// The sense bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Sense data format (SPC-4 4.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenseFormat {
    /// Response code 0x70, 18 bytes.
    Fixed,
    /// Response code 0x72.
    Descriptor,
}

impl Sense {
    /// Sense without information or field pointer.
    pub const fn new(key: SenseKey, asc: Asc) -> Self {
        Self {
            key,
            asc,
            info: None,
            field: None,
            progress: None,
            segment: None,
        }
    }

    /// NO SENSE, as REQUEST SENSE returns when nothing is pending.
    pub const NONE: Self = Self::new(SenseKey::NoSense, asc::NO_ADDITIONAL_SENSE);

    /// The three sense-key-specific bytes, if there is something to put
    /// there: a field pointer (SPC-4 table 32) or a progress indication
    /// (table 33: SKSV, then the 16-bit fraction of 65536).
    fn sks(&self) -> Option<[u8; 3]> {
        if let Some((fp, in_cdb)) = self.field {
            return Some(fp.sks(in_cdb));
        }
        if let Some(p) = self.progress {
            let [hi, lo] = p.to_be_bytes();
            return Some([0x80, hi, lo]);
        }
        // A COPY ABORTED segment pointer (SD: in the segment descriptor).
        let (fp, sd) = self.segment?.pointer?;
        Some(fp.sks_with(if sd { 0x20 } else { 0 }))
    }

    /// Format in `format`.
    pub fn to_bytes(&self, format: SenseFormat) -> SenseBytes {
        match format {
            SenseFormat::Fixed => self.to_fixed(),
            SenseFormat::Descriptor => self.to_descriptor(),
        }
    }

    /// Fixed format, current error (SPC-4 4.5.3, table 42). The INFORMATION
    /// field holds four bytes; a larger value leaves VALID zero (4.5.3).
    pub fn to_fixed(&self) -> SenseBytes {
        let mut s = SenseBytes::EMPTY;
        let b = &mut s.bytes;
        b[0] = 0x70;
        b[2] = self.key as u8;
        if let Some(info) = self.info
            && let Ok(info) = u32::try_from(info)
        {
            b[0] |= 0x80;
            b[3..7].copy_from_slice(&info.to_be_bytes());
        }
        b[7] = 10; // additional sense length: bytes 8..18
        b[12] = self.asc.0;
        b[13] = self.asc.1;
        if let Some(sks) = self.sks() {
            b[15..18].copy_from_slice(&sks);
        }
        if let Some(seg) = self.segment {
            b[10..12].copy_from_slice(&seg.segment.to_be_bytes());
        }
        s.len = 18;
        s
    }

    /// Descriptor format, current error (SPC-4 4.5.2, table 12), with an
    /// Information descriptor (4.5.2.2) and a sense-key-specific descriptor
    /// (4.5.2.4) when there is something to put in them.
    pub fn to_descriptor(&self) -> SenseBytes {
        let mut s = SenseBytes::EMPTY;
        let b = &mut s.bytes;
        b[0] = 0x72;
        b[1] = self.key as u8;
        b[2] = self.asc.0;
        b[3] = self.asc.1;
        let mut at = 8;
        if let Some(info) = self.info {
            b[at] = 0x00; // descriptor type: information
            b[at + 1] = 0x0A;
            b[at + 2] = 0x80; // VALID
            b[at + 4..at + 12].copy_from_slice(&info.to_be_bytes());
            at += 12;
        }
        if let Some(seg) = self.segment {
            // Command-specific information descriptor (4.5.2.3), the
            // fixed format's four bytes right-aligned in its eight.
            b[at] = 0x01;
            b[at + 1] = 0x0A;
            b[at + 10..at + 12].copy_from_slice(&seg.segment.to_be_bytes());
            at += 12;
        }
        if let Some(sks) = self.sks() {
            b[at] = 0x02; // descriptor type: sense key specific
            b[at + 1] = 0x06;
            b[at + 4..at + 7].copy_from_slice(&sks);
            at += 8;
        }
        b[7] = (at - 8) as u8;
        s.len = at as u8;
        s
    }
}

impl UnitAttention {
    /// The additional sense code reported for this condition.
    pub fn asc(self) -> Asc {
        match self {
            Self::PowerOnReset => asc::POWER_ON_RESET,
            Self::LunReset => asc::BUS_DEVICE_RESET,
            Self::ModeParametersChanged => asc::MODE_PARAMETERS_CHANGED,
            Self::CapacityDataChanged => asc::CAPACITY_DATA_CHANGED,
        }
    }
}

impl CommandError {
    /// THE table: the sense for every way a command can fail.
    pub fn sense(&self) -> Sense {
        use SenseKey::*;
        let plain = |key, a| Sense::new(key, a);
        match *self {
            Self::EmptyCdb | Self::InvalidOpcode { .. } => {
                plain(IllegalRequest, asc::INVALID_COMMAND_OPCODE)
            }
            Self::CdbTooShort { .. } => plain(IllegalRequest, asc::INVALID_FIELD_IN_CDB),
            Self::InvalidField(fp) => Sense {
                field: Some((fp, true)),
                ..plain(IllegalRequest, asc::INVALID_FIELD_IN_CDB)
            },
            Self::InvalidParameter(fp) => Sense {
                field: Some((fp, false)),
                ..plain(IllegalRequest, asc::INVALID_FIELD_IN_PARAMETER_LIST)
            },
            Self::ParameterListLength => plain(IllegalRequest, asc::PARAMETER_LIST_LENGTH_ERROR),
            Self::LbaOutOfRange => plain(IllegalRequest, asc::LBA_OUT_OF_RANGE),
            Self::SavingNotSupported => plain(IllegalRequest, asc::SAVING_PARAMETERS_NOT_SUPPORTED),
            Self::WriteProtected => plain(DataProtect, asc::WRITE_PROTECTED),
            Self::Miscompare { offset } => Sense {
                info: Some(offset),
                ..plain(Miscompare, asc::MISCOMPARE_DURING_VERIFY)
            },
            Self::UnitAttention(ua) => plain(UnitAttention, ua.asc()),
            Self::SanitizeInProgress { progress } => Sense {
                progress: Some(progress),
                ..plain(NotReady, asc::SANITIZE_IN_PROGRESS)
            },
            Self::SanitizeFailed => plain(MediumError, asc::SANITIZE_COMMAND_FAILED),
            Self::Backend { op, err } => {
                let s = match (err.kind, op) {
                    (BackendErrorKind::Medium, BackendOp::Read | BackendOp::BlockStatus) => {
                        plain(MediumError, asc::UNRECOVERED_READ_ERROR)
                    }
                    (BackendErrorKind::Medium, _) => plain(MediumError, asc::WRITE_ERROR),
                    (BackendErrorKind::NoSpace, _) => {
                        plain(DataProtect, asc::SPACE_ALLOCATION_FAILED)
                    }
                    (BackendErrorKind::ReadOnly, _) => plain(DataProtect, asc::WRITE_PROTECTED),
                    (BackendErrorKind::OutOfRange, _) => {
                        plain(IllegalRequest, asc::LBA_OUT_OF_RANGE)
                    }
                    (BackendErrorKind::Unsupported, _) => {
                        plain(IllegalRequest, asc::INVALID_FIELD_IN_CDB)
                    }
                    (BackendErrorKind::Unavailable, _) => plain(NotReady, asc::BECOMING_READY),
                    (BackendErrorKind::Offline, _) => plain(NotReady, asc::MANUAL_INTERVENTION),
                    (BackendErrorKind::Internal | BackendErrorKind::Buffer, _) => {
                        plain(HardwareError, asc::INTERNAL_TARGET_FAILURE)
                    }
                    (BackendErrorKind::Aborted, _) => {
                        plain(AbortedCommand, asc::NO_ADDITIONAL_SENSE)
                    }
                };
                // SBC-3 4.15: the INFORMATION field carries the first failing LBA.
                Sense {
                    info: err.lba.map(|l| l.0),
                    ..s
                }
            }
            Self::Buffer(_) => plain(HardwareError, asc::INTERNAL_TARGET_FAILURE),
            Self::Copy(e) => {
                let param = |a, fp| Sense {
                    field: Some((fp, false)),
                    ..plain(IllegalRequest, a)
                };
                match e {
                    CopyError::TooManyCscds(fp) => param(asc::TOO_MANY_TARGET_DESCRIPTORS, fp),
                    CopyError::UnsupportedCscdType(fp) => {
                        param(asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE, fp)
                    }
                    CopyError::TooManySegments(fp) => param(asc::TOO_MANY_SEGMENT_DESCRIPTORS, fp),
                    CopyError::UnsupportedSegmentType(fp) => {
                        param(asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE, fp)
                    }
                    CopyError::LbaOutOfRange(fp) => param(asc::LBA_OUT_OF_RANGE, fp),
                    CopyError::OperationInProgress(fp) => param(asc::OPERATION_IN_PROGRESS, fp),
                    CopyError::InsufficientResources => {
                        plain(IllegalRequest, asc::INSUFFICIENT_RESOURCES)
                    }
                    CopyError::Aborted {
                        reason,
                        at,
                        residual,
                    } => Sense {
                        info: residual,
                        segment: Some(at),
                        ..plain(
                            CopyAborted,
                            match reason {
                                CopyAbort::Unreachable => asc::COPY_TARGET_DEVICE_NOT_REACHABLE,
                                CopyAbort::DeviceFailure => asc::THIRD_PARTY_DEVICE_FAILURE,
                                CopyAbort::InexactSegment => asc::UNEXPECTED_INEXACT_SEGMENT,
                            },
                        )
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of the table, each against SPC-4 table 27/28 values.
    use super::*;
    use crate::units::Lba;

    fn triple(e: CommandError) -> (u8, u8, u8) {
        let s = e.sense();
        (s.key as u8, s.asc.0, s.asc.1)
    }
    fn backend(kind: BackendErrorKind, op: BackendOp) -> CommandError {
        CommandError::Backend {
            op,
            err: BackendError::new(kind),
        }
    }

    #[test]
    fn empty_cdb_is_invalid_command_operation_code() {
        assert_eq!(triple(CommandError::EmptyCdb), (0x05, 0x20, 0x00));
    }
    #[test]
    fn unknown_opcode_is_invalid_command_operation_code() {
        assert_eq!(
            triple(CommandError::InvalidOpcode { opcode: 0xFF }),
            (0x05, 0x20, 0x00)
        );
    }
    #[test]
    fn short_cdb_is_invalid_field_in_cdb_without_pointer() {
        let e = CommandError::CdbTooShort { len: 3, needed: 10 };
        assert_eq!(triple(e), (0x05, 0x24, 0x00));
        assert_eq!(e.sense().field, None);
    }
    #[test]
    fn invalid_field_carries_cdb_pointer() {
        let e = CommandError::InvalidField(FieldPointer::bit(1, 7));
        assert_eq!(triple(e), (0x05, 0x24, 0x00));
        assert_eq!(e.sense().field, Some((FieldPointer::bit(1, 7), true)));
    }
    #[test]
    fn invalid_parameter_carries_parameter_pointer() {
        let e = CommandError::InvalidParameter(FieldPointer::byte(12));
        assert_eq!(triple(e), (0x05, 0x26, 0x00));
        assert_eq!(e.sense().field, Some((FieldPointer::byte(12), false)));
    }
    #[test]
    fn parameter_list_length_error() {
        assert_eq!(
            triple(CommandError::ParameterListLength),
            (0x05, 0x1A, 0x00)
        );
    }
    #[test]
    fn lba_out_of_range() {
        assert_eq!(triple(CommandError::LbaOutOfRange), (0x05, 0x21, 0x00));
    }
    #[test]
    fn saving_parameters_not_supported() {
        assert_eq!(triple(CommandError::SavingNotSupported), (0x05, 0x39, 0x00));
    }
    #[test]
    fn write_protected_is_data_protect() {
        assert_eq!(triple(CommandError::WriteProtected), (0x07, 0x27, 0x00));
    }
    #[test]
    fn miscompare_reports_offset_in_information() {
        let e = CommandError::Miscompare { offset: 513 };
        assert_eq!(triple(e), (0x0E, 0x1D, 0x00));
        assert_eq!(e.sense().info, Some(513));
    }
    #[test]
    fn unit_attentions() {
        use UnitAttention::*;
        let ua = |u| triple(CommandError::UnitAttention(u));
        assert_eq!(ua(PowerOnReset), (0x06, 0x29, 0x00));
        assert_eq!(ua(LunReset), (0x06, 0x29, 0x03));
        assert_eq!(ua(ModeParametersChanged), (0x06, 0x2A, 0x01));
        assert_eq!(ua(CapacityDataChanged), (0x06, 0x2A, 0x09));
    }
    #[test]
    fn backend_medium_error_on_read_is_unrecovered_read_error() {
        let e = CommandError::Backend {
            op: BackendOp::Read,
            err: BackendError::at(BackendErrorKind::Medium, Lba(77)),
        };
        assert_eq!(triple(e), (0x03, 0x11, 0x00));
        assert_eq!(e.sense().info, Some(77));
    }
    #[test]
    fn sanitize_in_progress_is_not_ready_with_progress_indication() {
        let e = CommandError::SanitizeInProgress { progress: 0x4000 };
        assert_eq!(triple(e), (0x02, 0x04, 0x1B));
        assert_eq!(e.sense().progress, Some(0x4000));
        assert_eq!(e.sense().field, None);
        // SPC-4 table 33: SKSV, then PROGRESS INDICATION in bytes 16-17.
        let b = e.sense().to_fixed();
        assert_eq!(&b.as_slice()[15..18], &[0x80, 0x40, 0x00]);
    }
    #[test]
    fn sanitize_failed_is_medium_error_sanitize_command_failed() {
        let e = CommandError::SanitizeFailed;
        assert_eq!(triple(e), (0x03, 0x31, 0x03));
        assert_eq!(e.sense().progress, None);
    }
    #[test]
    fn backend_medium_error_on_block_status_is_unrecovered_read_error() {
        assert_eq!(
            triple(backend(BackendErrorKind::Medium, BackendOp::BlockStatus)),
            (0x03, 0x11, 0x00)
        );
    }
    #[test]
    fn backend_internal_on_block_status_is_internal_target_failure() {
        // Also what a malformed block status answer becomes.
        assert_eq!(
            triple(backend(BackendErrorKind::Internal, BackendOp::BlockStatus)),
            (0x04, 0x44, 0x00)
        );
    }
    #[test]
    fn backend_medium_error_on_write_is_write_error() {
        for op in [
            BackendOp::Write,
            BackendOp::Flush,
            BackendOp::Discard,
            BackendOp::WriteZeroes,
        ] {
            assert_eq!(
                triple(backend(BackendErrorKind::Medium, op)),
                (0x03, 0x0C, 0x00)
            );
        }
    }
    #[test]
    fn backend_no_space_is_space_allocation_failed() {
        assert_eq!(
            triple(backend(BackendErrorKind::NoSpace, BackendOp::Write)),
            (0x07, 0x27, 0x07)
        );
    }
    #[test]
    fn backend_read_only_is_write_protected() {
        assert_eq!(
            triple(backend(BackendErrorKind::ReadOnly, BackendOp::Write)),
            (0x07, 0x27, 0x00)
        );
    }
    #[test]
    fn backend_out_of_range_is_lba_out_of_range() {
        assert_eq!(
            triple(backend(BackendErrorKind::OutOfRange, BackendOp::Read)),
            (0x05, 0x21, 0x00)
        );
    }
    #[test]
    fn backend_unsupported_is_invalid_field_in_cdb() {
        let e = backend(BackendErrorKind::Unsupported, BackendOp::Discard);
        assert_eq!(triple(e), (0x05, 0x24, 0x00));
        assert_eq!(e.sense().field, None);
    }
    #[test]
    fn backend_unavailable_is_not_ready_becoming_ready() {
        assert_eq!(
            triple(backend(BackendErrorKind::Unavailable, BackendOp::Read)),
            (0x02, 0x04, 0x01)
        );
    }
    #[test]
    fn backend_offline_is_not_ready_manual_intervention_required() {
        assert_eq!(
            triple(backend(BackendErrorKind::Offline, BackendOp::Write)),
            (0x02, 0x04, 0x03)
        );
    }
    #[test]
    fn backend_internal_is_internal_target_failure() {
        assert_eq!(
            triple(backend(BackendErrorKind::Internal, BackendOp::Read)),
            (0x04, 0x44, 0x00)
        );
    }
    #[test]
    fn backend_buffer_is_internal_target_failure() {
        assert_eq!(
            triple(backend(BackendErrorKind::Buffer, BackendOp::Write)),
            (0x04, 0x44, 0x00)
        );
    }
    #[test]
    fn backend_aborted_is_aborted_command() {
        assert_eq!(
            triple(backend(BackendErrorKind::Aborted, BackendOp::Flush)),
            (0x0B, 0x00, 0x00)
        );
    }
    #[test]
    fn buffer_error_is_internal_target_failure() {
        let e = CommandError::Buffer(BufferError::OutOfBounds {
            off: 0,
            len: 1,
            buf_len: 0,
        });
        assert_eq!(triple(e), (0x04, 0x44, 0x00));
    }

    #[test]
    fn fixed_format_layout_with_field_pointer() {
        // SPC-4 table 42 (fixed) + table 32 (field pointer): INVALID FIELD
        // IN CDB, byte 2, bit 5 of the CDB.
        let e = CommandError::InvalidField(FieldPointer::bit(2, 5));
        let b = e.sense().to_fixed();
        assert_eq!(
            b.as_slice(),
            &[
                0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0xCD, 0x00, 0x02
            ]
        );
    }

    #[test]
    fn fixed_format_information_valid_bit() {
        let b = CommandError::Miscompare { offset: 0x1234 }
            .sense()
            .to_fixed();
        assert_eq!(b.as_slice()[0], 0xF0);
        assert_eq!(&b.as_slice()[3..7], &[0, 0, 0x12, 0x34]);
        // An LBA beyond 32 bits does not fit: VALID stays zero.
        let big = CommandError::Backend {
            op: BackendOp::Read,
            err: BackendError::at(BackendErrorKind::Medium, Lba(1 << 40)),
        };
        let b = big.sense().to_fixed();
        assert_eq!(b.as_slice()[0], 0x70);
        assert_eq!(&b.as_slice()[3..7], &[0; 4]);
    }

    #[test]
    fn descriptor_format_layout() {
        // SPC-4 table 12 header, 4.5.2.2 information descriptor, 4.5.2.4
        // sense key specific descriptor (parameter list: C/D = 0, no BPV).
        let e = CommandError::InvalidParameter(FieldPointer::byte(0x0102));
        assert_eq!(
            e.sense().to_descriptor().as_slice(),
            &[
                0x72, 0x05, 0x26, 0x00, 0, 0, 0, 8, //
                0x02, 0x06, 0, 0, 0x80, 0x01, 0x02, 0
            ]
        );
        let m = CommandError::Miscompare { offset: 7 }
            .sense()
            .to_descriptor();
        assert_eq!(
            m.as_slice(),
            &[
                0x72, 0x0E, 0x1D, 0x00, 0, 0, 0, 12, //
                0x00, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 7
            ]
        );
        // Progress indication in a sense key specific descriptor (4.5.2.4.3).
        let p = CommandError::SanitizeInProgress { progress: 0x1234 }
            .sense()
            .to_descriptor();
        assert_eq!(
            p.as_slice(),
            &[
                0x72, 0x02, 0x04, 0x1B, 0, 0, 0, 8, //
                0x02, 0x06, 0, 0, 0x80, 0x12, 0x34, 0
            ]
        );
    }

    #[test]
    fn copy_list_errors_are_illegal_request_with_parameter_pointers() {
        let fp = FieldPointer::byte(2);
        for (e, q) in [
            (CopyError::TooManyCscds(fp), 0x06),
            (CopyError::UnsupportedCscdType(fp), 0x07),
            (CopyError::TooManySegments(fp), 0x08),
            (CopyError::UnsupportedSegmentType(fp), 0x09),
        ] {
            let e = CommandError::Copy(e);
            assert_eq!(triple(e), (0x05, 0x26, q));
            assert_eq!(e.sense().field, Some((fp, false)));
        }
        let e = CommandError::Copy(CopyError::LbaOutOfRange(FieldPointer::byte(40)));
        assert_eq!(triple(e), (0x05, 0x21, 0x00));
        assert_eq!(e.sense().field, Some((FieldPointer::byte(40), false)));
        let e = CommandError::Copy(CopyError::OperationInProgress(FieldPointer::byte(0)));
        assert_eq!(triple(e), (0x05, 0x00, 0x16));
        let e = CommandError::Copy(CopyError::InsufficientResources);
        assert_eq!(triple(e), (0x05, 0x55, 0x03));
    }

    #[test]
    fn copy_aborted_fixed_layout() {
        // SPC-4 4.5.3 fixed format: INFORMATION = residual, COMMAND-SPECIFIC
        // INFORMATION bytes 3-4 = segment, segment pointer with SD (4.5.2.4.5).
        let abort = |reason, pointer, residual| {
            CommandError::Copy(CopyError::Aborted {
                reason,
                at: SegmentSense {
                    segment: 0x0102,
                    pointer,
                },
                residual,
            })
        };
        let e = abort(
            CopyAbort::InexactSegment,
            Some((FieldPointer::byte(10), true)),
            None,
        );
        assert_eq!(triple(e), (0x0A, 0x26, 0x0A));
        assert_eq!(
            e.sense().to_fixed().as_slice(),
            &[
                0x70, 0, 0x0A, 0, 0, 0, 0, 10, 0, 0, 0x01, 0x02, 0x26, 0x0A, 0, 0xA0, 0, 10
            ]
        );
        let e = abort(
            CopyAbort::DeviceFailure,
            Some((FieldPointer::byte(48), false)),
            Some(7),
        );
        assert_eq!(
            e.sense().to_fixed().as_slice(),
            &[
                0xF0, 0, 0x0A, 0, 0, 0, 7, 10, 0, 0, 0x01, 0x02, 0x0D, 0x01, 0, 0x80, 0, 48
            ]
        );
        assert_eq!(
            triple(abort(CopyAbort::Unreachable, None, None)),
            (0x0A, 0x0D, 0x02)
        );
    }

    #[test]
    fn copy_aborted_descriptor_layout() {
        let e = CommandError::Copy(CopyError::Aborted {
            reason: CopyAbort::DeviceFailure,
            at: SegmentSense {
                segment: 3,
                pointer: Some((FieldPointer::byte(16), false)),
            },
            residual: Some(5),
        });
        let d = e.sense().to_descriptor();
        assert_eq!(d.as_slice().len(), MAX_SENSE_LEN);
        assert_eq!(
            d.as_slice(),
            &[
                0x72, 0x0A, 0x0D, 0x01, 0, 0, 0, 32, //
                0x00, 0x0A, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 5, //
                0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, //
                0x02, 0x06, 0, 0, 0x80, 0, 16, 0
            ]
        );
    }
}
