//! The device configuration string: `key=value,key=value`.
//!
//! The host passes the operator's configuration to `disk.open`, with the
//! device's geometry added as the reserved keys [`HOST_KEYS`] (`size=`,
//! `sector=`) unless the operator set them.
//! [`Config::parse`] splits it once; the typed getters convert values and
//! remember which keys were used, and [`Config::finish`] refuses keys nobody
//! asked for, so a typo (`szie=1G`) is an error instead of a silently ignored
//! option.
//!
//! Syntax: entries are separated by `,`; each is `key=value` or a bare `key`
//! (a flag, read by [`Config::flag`]). Spaces around keys and values are
//! ignored. Keys may appear only once. Sizes are decimal numbers with an
//! optional binary suffix: `K`, `M`, `G`, `T`, `P` (powers of 1024; `KiB`,
//! `MB`, ... and lower case are accepted the same way) — see [`parse_size`].

use core::cell::Cell;
use core::fmt;

use crate::ErrorCode;
use crate::geometry::SectorSize;

/// Keys the host puts in every configuration: the device's size in bytes
/// (`size=`) and sector size (`sector=`), unless the configuration already
/// names them. A backstore's `info()` must agree with them; the host
/// refuses one that does not, saying both geometries.
pub const HOST_KEYS: [&str; 2] = ["size", "sector"];

/// Why a configuration string was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    key: Option<String>,
    reason: String,
}

impl ConfigError {
    fn new(key: Option<&str>, reason: impl Into<String>) -> Self {
        Self {
            key: key.map(str::to_owned),
            reason: reason.into(),
        }
    }

    /// The key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Log the error through the host log and return the code `disk.open`
    /// should fail with ([`ErrorCode::InvalidConfig`]).
    pub fn report(&self) -> ErrorCode {
        crate::log::error(&format!("invalid configuration: {self}"));
        ErrorCode::InvalidConfig
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "`{key}`: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for ErrorCode {
    fn from(_: ConfigError) -> Self {
        ErrorCode::InvalidConfig
    }
}

#[derive(Debug)]
struct Entry<'a> {
    key: &'a str,
    value: Option<&'a str>,
    used: Cell<bool>,
}

/// A parsed configuration string. See the [module docs](self).
#[derive(Debug)]
pub struct Config<'a> {
    entries: Vec<Entry<'a>>,
}

impl<'a> Config<'a> {
    /// Split `text` into entries. Fails on empty keys and repeated keys.
    pub fn parse(text: &'a str) -> Result<Self, ConfigError> {
        let mut entries: Vec<Entry<'a>> = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (item, None),
            };
            if key.is_empty() {
                return Err(ConfigError::new(None, format!("entry `{item}` has no key")));
            }
            if entries.iter().any(|e| e.key == key) {
                return Err(ConfigError::new(Some(key), "given more than once"));
            }
            entries.push(Entry {
                key,
                value,
                used: Cell::new(false),
            });
        }
        Ok(Self { entries })
    }

    fn entry(&self, key: &str) -> Option<&Entry<'a>> {
        let entry = self.entries.iter().find(|e| e.key == key)?;
        entry.used.set(true);
        Some(entry)
    }

    /// The value of `key` as text; `Ok(None)` when absent. A bare `key`
    /// without `=value` is an error here.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry { value: Some(v), .. }) => Ok(Some(v)),
            Some(Entry { value: None, .. }) => Err(ConfigError::new(Some(key), "needs a value")),
        }
    }

    /// A size in bytes (`64M`, `1G`, `4096`); see [`parse_size`].
    pub fn size(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.str(key)?
            .map(|v| parse_size(v).map_err(|reason| ConfigError::new(Some(key), reason)))
            .transpose()
    }

    /// An unsigned integer (decimal, or hexadecimal with `0x`).
    pub fn u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.str(key)?
            .map(|v| {
                parse_u64(v)
                    .ok_or_else(|| ConfigError::new(Some(key), format!("`{v}` is not a number")))
            })
            .transpose()
    }

    /// A sector size: `512` or `4096` (`4K` is accepted too).
    pub fn sector_size(&self, key: &str) -> Result<Option<SectorSize>, ConfigError> {
        let Some(bytes) = self.size(key)? else {
            return Ok(None);
        };
        u32::try_from(bytes)
            .ok()
            .and_then(SectorSize::from_bytes)
            .map(Some)
            .ok_or_else(|| {
                ConfigError::new(
                    Some(key),
                    format!("sector size must be 512 or 4096, not {bytes}"),
                )
            })
    }

    /// A boolean: a bare `key`, or `key=` one of `true/false`, `yes/no`,
    /// `on/off`, `1/0`. Absent keys are `false`.
    pub fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        match self.entry(key) {
            None => Ok(false),
            Some(Entry { value: None, .. }) => Ok(true),
            Some(Entry { value: Some(v), .. }) => match v.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok(true),
                "false" | "no" | "off" | "0" => Ok(false),
                _ => Err(ConfigError::new(
                    Some(key),
                    format!("`{v}` is not a boolean"),
                )),
            },
        }
    }

    /// Refuse keys that no getter asked for, except the host's reserved
    /// [`HOST_KEYS`] (`size`, `sector`): the host adds them to every
    /// configuration, so a backstore that does not read them is not
    /// refused for them. A backstore that ignores them must still report
    /// that geometry in `info()`, or the host refuses it at open.
    pub fn finish(self) -> Result<(), ConfigError> {
        let unknown: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| !e.used.get() && !HOST_KEYS.contains(&e.key))
            .map(|e| e.key)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::new(
                None,
                format!("unknown option(s): {}", unknown.join(", ")),
            ))
        }
    }
}

fn parse_u64(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Parse a size: decimal digits and an optional binary suffix `K`, `M`, `G`,
/// `T` or `P` (case-insensitive, optionally followed by `B` or `iB`); a
/// plain `B` suffix means bytes. `1G` is 1073741824. Fails on overflow.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, suffix) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size (expected e.g. 512, 64M, 1G)"
        ));
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return Err(format!("`{text}` has an unknown size suffix `{suffix}`")),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("7b"), Ok(7));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("16384P").is_err(), "2^64 overflows");
        assert!(parse_size("99999999999999999999").is_err());
    }

    #[test]
    fn typed_getters_read_their_keys() {
        let c =
            Config::parse(" file = disk.img , size=1G,sector=4096,readonly,sparse=off").unwrap();
        assert_eq!(c.str("file"), Ok(Some("disk.img")));
        assert_eq!(c.size("size"), Ok(Some(1 << 30)));
        assert_eq!(c.sector_size("sector"), Ok(Some(SectorSize::B4096)));
        assert_eq!(c.flag("readonly"), Ok(true));
        assert_eq!(c.flag("sparse"), Ok(false));
        assert_eq!(c.flag("absent"), Ok(false));
        assert_eq!(c.size("absent"), Ok(None));
        assert_eq!(c.finish(), Ok(()));
    }

    #[test]
    fn unknown_keys_fail_finish() {
        let c = Config::parse("size=1G,szie=2G").unwrap();
        assert_eq!(c.size("size"), Ok(Some(1 << 30)));
        let err = c.finish().unwrap_err();
        assert!(err.to_string().contains("szie"), "{err}");
    }

    #[test]
    fn the_hosts_geometry_keys_are_never_unknown() {
        // A backstore that takes its geometry elsewhere (e.g. from a file)
        // and never reads size= or sector= is not refused for them.
        let c = Config::parse("file=a.img,size=1048576,sector=512").unwrap();
        assert_eq!(c.str("file"), Ok(Some("a.img")));
        assert_eq!(c.finish(), Ok(()));
    }

    #[test]
    fn repeated_and_empty_keys_are_refused() {
        assert!(Config::parse("size=1G,size=2G").is_err());
        assert!(Config::parse("=1G").is_err());
    }

    #[test]
    fn empty_config_is_empty() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.size("size"), Ok(None));
        assert_eq!(c.finish(), Ok(()));
    }

    #[test]
    fn wrong_value_types_name_the_key() {
        let c = Config::parse("sector=1024,size,n=x,b=maybe").unwrap();
        assert_eq!(c.sector_size("sector").unwrap_err().key(), Some("sector"));
        assert_eq!(c.size("size").unwrap_err().key(), Some("size"));
        assert_eq!(c.u64("n").unwrap_err().key(), Some("n"));
        assert_eq!(c.flag("b").unwrap_err().key(), Some("b"));
    }

    #[test]
    fn numbers_accept_hex() {
        let c = Config::parse("a=0x10,b=10").unwrap();
        assert_eq!(c.u64("a"), Ok(Some(16)));
        assert_eq!(c.u64("b"), Ok(Some(10)));
    }
}
