//! JSON text without a serializer: string escaping (RFC 8259 §7) and an object writer that
//! appends `,"name":value` pairs to a line. Shared by the audit encoder and the binary's
//! `--log-format json`; written by hand because it is the per-request cost of every audit line
//! (serde's generic path, with a UTF-8 re-check per write, was a tenth of the DNS stub's profile;
//! docs/benchmarks.md).

use std::cell::RefCell;
use std::fmt::{self, Write};

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Runs `build` with an empty line buffer that is reused across calls on this thread, so a line
/// costs no allocation once the buffer has grown. A nested call (formatting a value that itself
/// logs) gets a fresh buffer.
pub fn with_line<R>(build: impl FnOnce(&mut String) -> R) -> R {
    LINE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut line) => {
            line.clear();
            build(&mut line)
        }
        Err(_) => build(&mut String::new()),
    })
}

/// Writes `value` as a JSON string literal.
pub fn string<W: Write>(out: &mut W, value: &str) -> fmt::Result {
    out.write_str("\"")?;
    Escaped(&mut *out).write_str(value)?;
    out.write_str("\"")
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// Escapes what it is given for the inside of a JSON string, so `write!(Escaped(out), "{x}")`
/// puts any `Display` into a string literal without an intermediate `String`.
pub struct Escaped<'a, W>(pub &'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !s.bytes().any(needs_escape) {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            let escape = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 | 0x7f => "",
                _ => continue,
            };
            // Bytes that need escaping are ASCII, so `i` is on a character boundary.
            self.0.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

/// Appends the members of a JSON object that is already open in `line`, each as `,"name":value`.
/// Writing into a `String` cannot fail, so the methods return nothing.
pub struct Object<'a> {
    line: &'a mut String,
}

impl<'a> Object<'a> {
    /// Continues the object open in `line` (after at least one member).
    pub fn new(line: &'a mut String) -> Self {
        Self { line }
    }

    fn key(&mut self, name: &str) {
        self.line.push(',');
        // A `String` never refuses a write.
        let _ = string(self.line, name);
        self.line.push(':');
    }

    /// A string member.
    pub fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        let _ = string(self.line, value);
    }

    /// A string member from anything `Display`, escaped as it is formatted.
    pub fn display(&mut self, name: &str, value: &dyn fmt::Display) {
        self.key(name);
        self.line.push('"');
        let _ = write!(Escaped(self.line), "{value}");
        self.line.push('"');
    }

    /// A string member, `""` when absent.
    pub fn display_or_empty(&mut self, name: &str, value: Option<&dyn fmt::Display>) {
        match value {
            Some(value) => self.display(name, value),
            None => self.str(name, ""),
        }
    }

    /// A number member.
    pub fn u64(&mut self, name: &str, value: u64) {
        self.key(name);
        let _ = write!(self.line, "{value}");
    }

    /// A number member; JSON has no NaN or infinity, so those are `null`.
    pub fn f64(&mut self, name: &str, value: f64) {
        self.key(name);
        if value.is_finite() {
            let _ = write!(self.line, "{value}");
        } else {
            self.line.push_str("null");
        }
    }

    /// A boolean member.
    pub fn bool(&mut self, name: &str, value: bool) {
        self.key(name);
        self.line.push_str(if value { "true" } else { "false" });
    }
}

/// Milliseconds with microsecond precision, as audit lines carry durations.
pub fn millis(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        string(&mut out, s).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_would_read_them() {
        for s in [
            "plain",
            "",
            "quote \" and backslash \\",
            "line\nfeed\r\ttab",
            "nul \0 bell \x07 esc \x1b del \x7f",
            "ünïcödé ☃ 𝄞",
            "\"\"\\\\",
        ] {
            let json = escaped(s);
            let back: String = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s, "{json}");
        }
    }

    #[test]
    fn an_object_reads_back_with_its_members_in_order() {
        let mut line = String::from("{\"first\":1");
        let mut o = Object::new(&mut line);
        o.str("s", "a\"b");
        o.display("d", &"x\ny");
        o.display_or_empty("none", None);
        o.u64("n", 7);
        o.f64("ms", 2.5);
        o.f64("nan", f64::NAN);
        o.bool("ok", true);
        line.push('}');
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["s"], "a\"b");
        assert_eq!(v["d"], "x\ny");
        assert_eq!(v["none"], "");
        assert_eq!(v["n"], 7);
        assert_eq!(v["ms"], 2.5);
        assert!(v["nan"].is_null());
        assert_eq!(v["ok"], true);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 8);
    }

    #[test]
    fn milliseconds_keep_microseconds() {
        assert_eq!(millis(std::time::Duration::from_micros(2518)), 2.518);
        assert_eq!(millis(std::time::Duration::from_nanos(1_499)), 0.001);
    }
}
