//! Human output: aligned tables and `key: value` blocks, and the few
//! values several commands print the same way.

use std::fmt::Write as _;

use crate::host::{GuestStats, LunInfo};
use crate::size::human_size;

/// A table's columns: their headers, which of them are right-aligned, and
/// what its rows are (for `no ...` when there are none).
#[derive(Debug)]
pub(super) struct Columns {
    pub(super) headers: &'static [&'static str],
    pub(super) right: &'static [usize],
    pub(super) what: &'static str,
}

/// `items` as a table, one `row` each: columns two spaces apart,
/// left-aligned except those `cols` puts right.
pub(super) fn table<T>(
    out: &mut String,
    cols: &Columns,
    items: &[T],
    row: impl Fn(&T) -> Vec<String>,
) {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    let Columns {
        headers,
        right,
        what,
    } = cols;
    if rows.is_empty() {
        let _ = writeln!(out, "no {what}");
        return;
    }
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w[i] - c.chars().count();
            if right.contains(&i) {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    let hdr: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    line(out, &hdr);
    for r in &rows {
        line(out, r);
    }
}

/// `key: value` lines with aligned values; empty values are left out, and
/// a value of several lines continues aligned under the first.
pub(super) fn block(out: &mut String, rows: &[(&str, String)]) {
    let rows: Vec<&(&str, String)> = rows.iter().filter(|(_, v)| !v.is_empty()).collect();
    let w = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, val) in rows {
        let pad = w - k.chars().count();
        let mut lines = val.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(out, "{k}:{}  {first}", " ".repeat(pad));
        for l in lines {
            let _ = writeln!(out, "{}   {l}", " ".repeat(w));
        }
    }
}

/// `-` for nothing.
pub(super) fn or_dash(s: impl Into<String>) -> String {
    let s = s.into();
    if s.is_empty() { "-".into() } else { s }
}

/// One item a line, or `(none)`.
pub(super) fn lines<T>(items: &[T], item: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    items.iter().map(item).collect::<Vec<_>>().join("\n")
}

/// `64 MiB (67108864 bytes)`.
pub(super) fn size_in_full(bytes: u64) -> String {
    format!("{} ({bytes} bytes)", human_size(bytes))
}

/// `LUN 0 on naa.5001405... (backstore user_0/wasmtap-dev3)`.
pub(super) fn lun_text(lun: &LunInfo) -> String {
    format!(
        "LUN {} on {} (backstore {})",
        lun.lun, lun.wwn, lun.backstore
    )
}

/// A backstore's own counters (its `stats()`), on one line.
pub(super) fn guest_stats_text(g: &GuestStats) -> String {
    format!(
        "reads {} ({}), writes {} ({}), flushes {}, discards {}, errors {}",
        g.reads,
        human_size(g.bytes_read),
        g.writes,
        human_size(g.bytes_written),
        g.flushes,
        g.discards,
        g.errors
    )
}
