//! SCSI target emulation (work in progress).
