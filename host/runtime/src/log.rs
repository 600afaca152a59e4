//! The bounded guest log: the host side of `wasmtap:backstore/log`, also fed
//! by the guest's stdout and stderr.
//!
//! Messages are cut to [`MAX_MESSAGE`] bytes (on a character boundary), at
//! most `lines_per_sec` lines a second are kept (a token bucket; the rest are
//! counted as dropped), and the last [`KEPT_LINES`] lines stay available for
//! the device's page. Accepted lines also go to `tracing` with the device's
//! name.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::bindings::log::Level;

/// Longest message kept, in bytes.
pub const MAX_MESSAGE: usize = 1024;
/// Lines kept for the device's page.
pub const KEPT_LINES: usize = 256;

/// One kept log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the host received it.
    pub at: SystemTime,
    /// `error`, `warn`, `info`, `debug`, or `stdout` / `stderr`.
    pub level: &'static str,
    /// The message, at most [`MAX_MESSAGE`] bytes.
    pub message: String,
}

/// One device's log (shared by its successive instances).
#[derive(Debug, Clone)]
pub struct GuestLog(Arc<Mutex<LogInner>>);

#[derive(Debug)]
struct LogInner {
    device: String,
    lines: VecDeque<LogLine>,
    per_sec: u32,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    /// Dropped since the last kept line (reported before the next one).
    dropped_unreported: u64,
    /// Partial stdout/stderr line, until its newline arrives.
    partial: String,
}

fn truncate(s: &mut String) {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

impl GuestLog {
    /// A log for `device` keeping at most `per_sec` lines a second.
    pub fn new(device: impl Into<String>, per_sec: u32) -> Self {
        Self(Arc::new(Mutex::new(LogInner {
            device: device.into(),
            lines: VecDeque::new(),
            per_sec,
            tokens: f64::from(per_sec),
            refilled: Instant::now(),
            dropped: 0,
            dropped_unreported: 0,
            partial: String::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // A panic while holding this lock cannot leave it inconsistent in a
        // way that matters for a log; keep going.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a message from the `log` interface.
    pub(crate) fn log(&self, level: Level, message: String) {
        let level = match level {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        self.lock().push(level, message);
    }

    /// Record a note of the host about this device's guest (a refused
    /// call and why): the author's view of a limit.
    pub(crate) fn host(&self, message: String) {
        self.lock().push("host", message);
    }

    /// Record output on stdout/stderr; complete lines become log lines.
    pub(crate) fn output(&self, stream: &'static str, bytes: &[u8]) {
        let mut g = self.lock();
        let text = String::from_utf8_lossy(bytes);
        for (i, piece) in text.split('\n').enumerate() {
            if i > 0 {
                let line = std::mem::take(&mut g.partial);
                g.push(stream, line);
            }
            if g.partial.len() < MAX_MESSAGE {
                g.partial.push_str(piece);
                truncate(&mut g.partial);
            }
        }
    }

    /// What the guest said since `since`: its last error or warning, else
    /// its last line (host notes included).
    pub fn said_since(&self, since: SystemTime) -> Option<String> {
        let inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let recent: Vec<&LogLine> = inner.lines.iter().filter(|l| l.at >= since).collect();
        recent
            .iter()
            .rev()
            .find(|l| matches!(l.level, "error" | "warn"))
            .or(recent.last())
            .map(|l| l.message.clone())
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<LogLine> {
        self.lock().lines.iter().cloned().collect()
    }

    /// Lines dropped by the rate limit so far.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }
}

impl LogInner {
    fn push(&mut self, level: &'static str, mut message: String) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let cap = f64::from(self.per_sec);
        self.tokens = (self.tokens + elapsed * cap).min(cap);
        if self.tokens < 1.0 {
            self.dropped += 1;
            self.dropped_unreported += 1;
            return;
        }
        self.tokens -= 1.0;
        if self.dropped_unreported > 0 {
            let n = std::mem::take(&mut self.dropped_unreported);
            self.keep(
                "host",
                format!("{n} log line(s) dropped: over {} a second", self.per_sec),
            );
        }
        truncate(&mut message);
        self.keep(level, escape(&message));
    }

    fn keep(&mut self, level: &'static str, message: String) {
        tracing::info!(target: "wasmtap::guest", device = %self.device, level, "{message}");
        if self.lines.len() == KEPT_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(LogLine {
            at: SystemTime::now(),
            level,
            message,
        });
    }
}

/// A guest's message as one line of printable text: control characters
/// (newlines, carriage returns, terminal escapes) are written as Rust
/// escapes, so a guest can neither forge lines of the daemon's log nor
/// drive the terminal that shows it.
fn escape(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_to_one_kib_on_a_char_boundary() {
        let log = GuestLog::new("d", 10);
        log.log(Level::Info, "é".repeat(1000));
        let l = &log.lines()[0];
        assert!(l.message.len() <= MAX_MESSAGE && l.message.len() >= MAX_MESSAGE - 1);
        assert!(l.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn lines_past_the_rate_are_dropped_and_counted() {
        let log = GuestLog::new("d", 5);
        for i in 0..20 {
            log.log(Level::Warn, format!("m{i}"));
        }
        assert_eq!(log.lines().len(), 5);
        assert_eq!(log.dropped(), 15);
    }

    #[test]
    fn control_characters_cannot_forge_lines_or_drive_a_terminal() {
        let log = GuestLog::new("d", 100);
        log.log(Level::Info, "ok\nadmin token: forged\r\x1b[2J".into());
        let l = &log.lines()[0];
        assert_eq!(l.message, "ok\\nadmin token: forged\\r\\u{1b}[2J");
        assert!(!l.message.chars().any(char::is_control));
    }

    #[test]
    fn drops_are_reported_in_the_log_when_lines_flow_again() {
        let log = GuestLog::new("d", 1000);
        for i in 0..1500 {
            log.log(Level::Warn, format!("m{i}"));
        }
        assert!(log.dropped() >= 400, "{}", log.dropped());
        std::thread::sleep(std::time::Duration::from_millis(20));
        log.log(Level::Warn, "again".into());
        let lines = log.lines();
        let n = lines.len();
        assert_eq!(lines[n - 1].message, "again");
        assert_eq!(lines[n - 2].level, "host");
        assert!(
            lines[n - 2].message.contains("dropped"),
            "{}",
            lines[n - 2].message
        );
    }

    #[test]
    fn stdout_is_split_into_lines() {
        let log = GuestLog::new("d", 100);
        log.output("stdout", b"hel");
        log.output("stdout", b"lo\nworld\n");
        let got: Vec<_> = log.lines().into_iter().map(|l| l.message).collect();
        assert_eq!(got, ["hello", "world"]);
    }
}
