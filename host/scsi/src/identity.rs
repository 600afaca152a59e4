//! Who the logical unit says it is: INQUIRY strings, the unit serial
//! number (VPD 0x80) and the designators of VPD 0x83.
//!
//! Initiators (multipath, udev's `/dev/disk/by-id`) key on these, so they
//! must be stable for a device across restarts: everything is derived from
//! what the owner gives here, nothing from run-time state.

/// Why an identity string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not printable ASCII (SPC-4 4.4.1), or empty where a value is needed.
    #[error("{field} must be printable ASCII")]
    NotAscii {
        /// Which field.
        field: &'static str,
    },
    /// Longer than the field holds.
    #[error("{field} is longer than {max} characters")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its capacity.
        max: usize,
    },
}

/// Identity of one logical unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    vendor: [u8; 8],
    product: [u8; 16],
    revision: [u8; 4],
    serial: String,
}

/// Longest unit serial number accepted (fits the T10 vendor ID designator's
/// one-byte length with the 8-byte vendor id in front of it).
pub const MAX_SERIAL_LEN: usize = 64;

fn ascii_field<const N: usize>(field: &'static str, s: &str) -> Result<[u8; N], IdentityError> {
    if !s.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(IdentityError::NotAscii { field });
    }
    if s.len() > N {
        return Err(IdentityError::TooLong { field, max: N });
    }
    // Left-aligned, padded with spaces (SPC-4 4.4.1).
    let mut out = [b' '; N];
    out[..s.len()].copy_from_slice(s.as_bytes());
    Ok(out)
}

impl DeviceIdentity {
    /// Vendor `WASMTAP`, product `wasmtap disk`, the crate's version as
    /// revision, and the given unit serial number (1 to 64 printable ASCII
    /// characters, unique per device).
    pub fn new(serial: &str) -> Result<Self, IdentityError> {
        Self::with_strings("WASMTAP", "wasmtap disk", env!("CARGO_PKG_VERSION"), serial)
    }

    /// Explicit T10 vendor id (8), product id (16) and revision (4).
    pub fn with_strings(
        vendor: &str,
        product: &str,
        revision: &str,
        serial: &str,
    ) -> Result<Self, IdentityError> {
        let revision: String = revision.chars().take(4).collect();
        if serial.is_empty() || serial.contains(' ') {
            return Err(IdentityError::NotAscii { field: "serial" });
        }
        if serial.len() > MAX_SERIAL_LEN {
            return Err(IdentityError::TooLong {
                field: "serial",
                max: MAX_SERIAL_LEN,
            });
        }
        ascii_field::<MAX_SERIAL_LEN>("serial", serial)?;
        Ok(Self {
            vendor: ascii_field("vendor", vendor)?,
            product: ascii_field("product", product)?,
            revision: ascii_field("revision", &revision)?,
            serial: serial.to_owned(),
        })
    }

    /// T10 vendor identification, space padded.
    pub fn vendor(&self) -> &[u8; 8] {
        &self.vendor
    }
    /// Product identification, space padded.
    pub fn product(&self) -> &[u8; 16] {
        &self.product
    }
    /// Product revision level, space padded.
    pub fn revision(&self) -> &[u8; 4] {
        &self.revision
    }
    /// Unit serial number.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// NAA designator, format 3h "locally assigned" (SPC-4 7.8.6.6.3):
    /// NAA in the top four bits, then 60 bits derived from the serial
    /// number by FNV-1a. Locally assigned because wasmtap owns no IEEE
    /// company id; stable because it depends on the serial alone.
    pub fn naa(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.serial.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (0x3 << 60) | (h & 0x0FFF_FFFF_FFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_space_padded() {
        let id = DeviceIdentity::with_strings("ACME", "disk", "1.2.3", "SN1").unwrap();
        assert_eq!(id.vendor(), b"ACME    ");
        assert_eq!(id.product(), b"disk            ");
        assert_eq!(id.revision(), b"1.2.");
    }

    #[test]
    fn bad_strings_are_refused() {
        assert!(DeviceIdentity::new("").is_err());
        assert!(DeviceIdentity::new("a b").is_err());
        assert!(DeviceIdentity::new("caf\u{e9}").is_err());
        assert!(DeviceIdentity::new(&"x".repeat(65)).is_err());
        assert!(DeviceIdentity::with_strings("TOO-LONG-V", "p", "r", "s").is_err());
    }

    #[test]
    fn naa_is_locally_assigned_stable_and_distinct() {
        let a = DeviceIdentity::new("dev-a").unwrap();
        let a2 = DeviceIdentity::with_strings("X", "Y", "Z", "dev-a").unwrap();
        let b = DeviceIdentity::new("dev-b").unwrap();
        assert_eq!(a.naa() >> 60, 3);
        assert_eq!(a.naa(), a2.naa());
        assert_ne!(a.naa(), b.naa());
    }
}
