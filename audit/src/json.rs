//! JSON text without a serializer: string escaping (RFC 8259 §7) and an object writer that
//! appends `,"name":value` pairs to a line. Shared by the audit encoder and the binary's
//! `--log-format json`; written by hand because it is the per-request cost of every audit line
//! (serde's generic path, with a UTF-8 re-check per write, was a tenth of the DNS stub's profile;
//! docs/benchmarks.md).

use std::cell::RefCell;
use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
    /// The last second [`timestamp`] wrote on this thread, and its text up to the fraction.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

/// Appends `time` as RFC 3339 UTC with microseconds (`2026-11-23T10:00:00.123456Z`), the text
/// `humantime::format_rfc3339_micros` writes. The date and time of day are formatted once a
/// second per thread, and only the fraction for each line.
pub fn timestamp(out: &mut String, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let reused = SECOND.with(|cell| {
        let Ok(mut second) = cell.try_borrow_mut() else {
            return false;
        };
        if second.0 != secs || second.1.is_empty() {
            second.1.clear();
            let whole = UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let _ = write!(second.1, "{}", humantime::format_rfc3339_seconds(whole));
            // Without its `Z`: the fraction goes first.
            second.1.pop();
            second.0 = secs;
        }
        out.push_str(&second.1);
        true
    });
    if !reused {
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(time));
        return;
    }
    let mut fraction = *b".000000Z";
    let mut micros = since.subsec_micros();
    for digit in fraction[1..7].iter_mut().rev() {
        // `micros % 10` is below 10: the cast keeps it.
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    fraction.iter().for_each(|&b| out.push(char::from(b)));
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

/// True when some byte of `bytes` needs escaping. Eight bytes at a time: every audit line's
/// strings go through this check, and a byte at a time it was the largest cost of encoding a DNS
/// query's event (docs/benchmarks.md).
fn any_needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `x` is zero (the "haszero" bit trick: exact as to whether any is).
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let has = |x: u64, b: u8| has_zero(x ^ (ONES * u64::from(b)));
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        // Whether any byte is below 0x20 ("hasless", exact for bounds up to 0x80).
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        if control || has(x, b'"') || has(x, b'\\') || has(x, 0x7f) {
            return true;
        }
    }
    chunks.remainder().iter().copied().any(needs_escape)
}

/// Escapes what it is given for the inside of a JSON string, so `write!(Escaped(out), "{x}")`
/// puts any `Display` into a string literal without an intermediate `String`.
pub struct Escaped<'a, W>(pub &'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !any_needs_escape(s.as_bytes()) {
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
        // Names are the field constants, which need no escaping: pushed whole.
        if any_needs_escape(name.as_bytes()) {
            self.line.push(',');
            // A `String` never refuses a write.
            let _ = string(self.line, name);
            self.line.push(':');
        } else {
            self.line.reserve(name.len() + 4);
            self.line.push_str(",\"");
            self.line.push_str(name);
            self.line.push_str("\":");
        }
    }

    /// A string member.
    pub fn str(&mut self, name: &str, value: &str) {
        self.key(name);
        if any_needs_escape(value.as_bytes()) {
            let _ = string(self.line, value);
        } else {
            // Most values need no escaping: pushed whole.
            self.line.reserve(value.len() + 2);
            self.line.push('"');
            self.line.push_str(value);
            self.line.push('"');
        }
    }

    /// A string member from anything `Display`. The value is formatted straight into the line
    /// and escaped afterwards only if it needs it (addresses, names and labels never do): a
    /// `Display` writes in many small pieces, and checking each one for escapes cost more than
    /// the formatting (docs/benchmarks.md).
    pub fn display(&mut self, name: &str, value: &dyn fmt::Display) {
        self.key(name);
        self.line.push('"');
        let start = self.line.len();
        let _ = write!(self.line, "{value}");
        if any_needs_escape(&self.line.as_bytes()[start..]) {
            let raw = self.line.split_off(start);
            let _ = Escaped(&mut *self.line).write_str(&raw);
        }
        self.line.push('"');
    }

    /// A socket address member (see [`socket_addr`]), `""` when absent.
    pub fn socket_addr_or_empty(&mut self, name: &str, value: Option<SocketAddr>) {
        self.key(name);
        self.line.push('"');
        if let Some(addr) = value {
            // Addresses need no escaping; a `String` never refuses a write.
            let _ = socket_addr(self.line, addr);
        }
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
        decimal(self.line, value);
    }

    /// A duration member in milliseconds with microsecond precision: the `f64` [`millis`]
    /// makes, written as `{}` writes it (`2.518`, `3`, `0.001`) but without float formatting
    /// (a tenth of a request's audit event). The value is a whole number of microseconds, so its
    /// shortest decimal is those thousandths without trailing zeros: below 10^15 µs any other
    /// decimal of three places or fewer is further from it than neighbouring `f64`s are apart.
    pub fn millis(&mut self, name: &str, duration: std::time::Duration) {
        let micros = (duration.as_secs_f64() * 1_000_000.0).round();
        if !(0.0..1e15).contains(&micros) {
            return self.f64(name, millis(duration));
        }
        self.key(name);
        // Whole, non-negative and below 10^15: the cast is exact.
        let micros = micros as u64;
        decimal(self.line, micros / 1000);
        let fraction = micros % 1000;
        if fraction != 0 {
            let digits = [fraction / 100, fraction / 10 % 10, fraction % 10];
            let places = if fraction.is_multiple_of(100) {
                1
            } else if fraction.is_multiple_of(10) {
                2
            } else {
                3
            };
            self.line.push('.');
            for digit in &digits[..places] {
                // A digit is below 10: the cast keeps it.
                self.line.push(char::from(b'0' + *digit as u8));
            }
        }
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

/// Writes `addr` as `std` prints it (`127.0.0.1:5353`, `[::1]:53`), an IPv4 address in one
/// write: `std`'s own formatting of an IPv4 address and port cost a tenth of a DNS query's audit
/// event (docs/benchmarks.md). IPv6 goes through `std`.
pub fn socket_addr<W: Write + ?Sized>(out: &mut W, addr: SocketAddr) -> fmt::Result {
    let SocketAddr::V4(v4) = addr else {
        return write!(out, "{addr}");
    };
    // "255.255.255.255:65535" is 21 bytes.
    let mut text = [0u8; 21];
    let mut len = 0;
    fn number(n: u16, text: &mut [u8; 21], len: &mut usize) {
        let mut digits = [0u8; 5];
        let mut count = 0;
        let mut rest = n;
        loop {
            // A digit is below 10: the cast keeps it.
            digits[count] = b'0' + (rest % 10) as u8;
            count += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &digit in digits[..count].iter().rev() {
            text[*len] = digit;
            *len += 1;
        }
    }
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        number(u16::from(octet), &mut text, &mut len);
    }
    text[len] = b':';
    len += 1;
    number(v4.port(), &mut text, &mut len);
    // Digits, dots and a colon: always UTF-8; the error arm is never taken.
    out.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
}

/// `value` in decimal, as `{}` writes it, without the formatting machinery (counts and
/// statuses are in every audit line; most counts are one digit).
fn decimal(line: &mut String, value: u64) {
    if let Ok(digit @ 0..=9) = u8::try_from(value) {
        line.push(char::from(b'0' + digit));
        return;
    }
    // u64::MAX has 20 digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    while rest > 0 {
        start -= 1;
        // A digit is below 10: the cast keeps it.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // ASCII digits are UTF-8.
    line.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
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
    fn the_word_at_a_time_check_agrees_with_the_byte_check() {
        let mut samples: Vec<Vec<u8>> = Vec::new();
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut s = vec![b'a'; 17];
                s[at] = b;
                samples.push(s);
            }
        }
        samples.push(b"plain ascii text, longer than eight bytes".to_vec());
        samples.push("ünïcödé ☃ 𝄞 and more".as_bytes().to_vec());
        for s in samples {
            assert_eq!(
                any_needs_escape(&s),
                s.iter().copied().any(needs_escape),
                "{s:?}"
            );
        }
    }

    #[test]
    fn an_object_reads_back_with_its_members_in_order() {
        let mut line = String::from("{\"first\":1");
        let mut o = Object::new(&mut line);
        o.str("s", "a\"b");
        o.display("d", &"x\ny");
        o.display("addr", &std::net::SocketAddr::from(([127, 0, 0, 1], 53)));
        o.display_or_empty("none", None);
        o.u64("n", 7);
        o.u64("big", 1234567);
        o.f64("ms", 2.5);
        o.f64("nan", f64::NAN);
        o.bool("ok", true);
        line.push('}');
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["s"], "a\"b");
        assert_eq!(v["d"], "x\ny");
        assert_eq!(v["addr"], "127.0.0.1:53");
        assert_eq!(v["none"], "");
        assert_eq!(v["n"], 7);
        assert_eq!(v["big"], 1234567);
        assert_eq!(v["ms"], 2.5);
        assert!(v["nan"].is_null());
        assert_eq!(v["ok"], true);
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 10);
    }

    #[test]
    fn timestamps_read_as_humantime_writes_them() {
        let start = SystemTime::now();
        for step in [0, 1, 999_999, 1_000_000, 86_399_999_999, 3_600_000_001] {
            let time = start + std::time::Duration::from_micros(step);
            let mut out = String::new();
            timestamp(&mut out, time);
            assert_eq!(out, humantime::format_rfc3339_micros(time).to_string());
        }
    }

    #[test]
    fn socket_addresses_print_as_std_prints_them() {
        for text in [
            "127.0.0.1:5353",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.20.3.40:53",
            "[::1]:5353",
            "[fe80::1%2]:53",
        ] {
            let addr: SocketAddr = text.parse().unwrap();
            let mut out = String::new();
            socket_addr(&mut out, addr).unwrap();
            assert_eq!(out, addr.to_string(), "{text}");
        }
    }

    /// The shortcuts write what `{}` writes.
    #[test]
    fn numbers_and_durations_are_written_as_display_writes_them() {
        let mut values: Vec<u64> = (0..2_000_000).step_by(7).collect();
        values.extend([
            9,
            10,
            99,
            100,
            1000,
            65_535,
            999_999_999,
            u64::MAX - 1,
            u64::MAX,
        ]);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            // xorshift: spread over every magnitude.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for value in values {
            let (mut fast, mut slow) = (String::new(), String::new());
            Object::new(&mut fast).u64("n", value);
            let _ = write!(slow, ",\"n\":{value}");
            assert_eq!(fast, slow);
            for nanos in [
                value,
                value.wrapping_mul(1000).wrapping_add(499),
                value.wrapping_mul(1000) / 7,
            ] {
                let duration = std::time::Duration::from_nanos(nanos);
                let (mut fast, mut slow) = (String::new(), String::new());
                Object::new(&mut fast).millis("d", duration);
                Object::new(&mut slow).f64("d", millis(duration));
                assert_eq!(fast, slow, "{duration:?}");
            }
        }
        for duration in [
            std::time::Duration::MAX,
            std::time::Duration::from_secs(1 << 40),
            std::time::Duration::from_secs(999_999_999),
        ] {
            let (mut fast, mut slow) = (String::new(), String::new());
            Object::new(&mut fast).millis("d", duration);
            Object::new(&mut slow).f64("d", millis(duration));
            assert_eq!(fast, slow, "{duration:?}");
        }
    }

    #[test]
    fn milliseconds_keep_microseconds() {
        assert_eq!(millis(std::time::Duration::from_micros(2518)), 2.518);
        assert_eq!(millis(std::time::Duration::from_nanos(1_499)), 0.001);
    }
}
