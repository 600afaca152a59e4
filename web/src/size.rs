//! Sizes as people write and read them: the one host-side parser (the
//! daemon's command line, the JSON API and the CLI all use it) and the one
//! way sizes are printed.
//!
//! The grammar is documented once, in docs/api.md ("Sizes"): digits, then
//! optionally a case-insensitive binary unit `K`, `M`, `G`, `T` or `P`
//! (each optionally followed by `B` or `iB`) or `B`; `64M`, `64mb` and
//! `64MiB` are 67108864 bytes. It is the grammar of the guest SDK's
//! `parse_size` (`guest-sdk/src/config.rs`), which backstores use for their
//! configuration; `web/tests/size_grammar.rs` keeps the two in step.

/// Parse a size (docs/api.md, "Sizes"). Zero is a size;
/// [`parse_nonzero_size`] refuses it.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a size (expected e.g. 512, 64M, 1G)"
        ));
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (K, M, G, T or P, optionally with B or iB)"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// [`parse_size`], refusing zero (a device's or a LUN's size).
pub fn parse_nonzero_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err(format!("{text:?}: the size must be more than 0")),
        n => Ok(n),
    }
}

/// `1536` → `1.5 KiB`; exact multiples print without a fraction.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut i = 0;
    while i + 1 < UNITS.len() && bytes >= 1u64 << (10 * (i + 1)) {
        i += 1;
    }
    let scale = 1u64 << (10 * i);
    if bytes.is_multiple_of(scale) {
        format!("{} {}", bytes / scale, UNITS[i])
    } else {
        format!("{:.1} {}", bytes as f64 / scale as f64, UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_in_any_case() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size(" 64M "), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1mb"), Ok(1 << 20));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("3P"), Ok(3 << 50));
        assert_eq!(parse_size("7b"), Ok(7));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_are_refused() {
        for bad in [
            "",
            "M",
            "64X",
            "1.5G",
            "-1",
            "+1",
            "1 M",
            "1Ki",
            "99999999999T",
            "16384P",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(parse_nonzero_size("0").unwrap_err().contains("more than 0"));
        assert_eq!(parse_nonzero_size("1K"), Ok(1024));
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 << 40), "3 TiB");
    }
}
