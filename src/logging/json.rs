//! One JSON object per line for the audit log and `--log-format json`:
//!
//! ```json
//! {"timestamp":"2026-11-23T13:55:52.802201Z","level":"INFO","message":"request","sandbox_id":"job-42",...,"target":"egressd::audit"}
//! ```
//!
//! The event's fields keep their order, flattened into the object; an event inside a span gets
//! `"spans":"conn{client.addr=...}"`. The escaping is the audit encoder's ([`audit::json`]), so
//! both kinds of line are written the same way.

use std::fmt::{self, Write};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use audit::json::{Escaped, string, with_line};

/// The event formatter; see the module documentation.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The line is built in a plain String (inlined writes), then handed over in one piece:
        // the layer's writer is a `dyn fmt::Write`, costly for the dozens of small writes.
        with_line(|line| {
            line_into(line, ctx, event)?;
            out.write_str(line)
        })
    }
}

fn line_into<S, N>(out: &mut String, ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let meta = event.metadata();
    write!(
        out,
        "{{\"timestamp\":\"{}\",\"level\":\"{}\"",
        humantime::format_rfc3339_micros(SystemTime::now()),
        meta.level()
    )?;
    let mut fields = Fields {
        out: &mut *out,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    if let Some(scope) = ctx.event_scope() {
        let mut spans = String::new();
        for span in scope.from_root() {
            if !spans.is_empty() {
                spans.push(':');
            }
            spans.push_str(span.name());
            if let Some(f) = span.extensions().get::<FormattedFields<N>>()
                && !f.is_empty()
            {
                write!(spans, "{{{f}}}")?;
            }
        }
        out.push_str(",\"spans\":");
        string(out, &spans)?;
    }
    out.push_str(",\"target\":");
    string(out, meta.target())?;
    out.push_str("}\n");
    Ok(())
}

/// Writes each field as `,"name":value`.
struct Fields<'a, W> {
    out: &'a mut W,
    result: fmt::Result,
}

impl<W: Write> Fields<'_, W> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.out.write_str(",")?;
                string(self.out, field.name())?;
                self.out.write_str(":")?;
                value(self.out)
            })();
        }
    }
}

impl<W: Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| string(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        if value.is_finite() {
            self.field(field, |out| write!(out, "{value}"));
        } else {
            self.field(field, |out| out.write_str("null"));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |out| {
            out.write_str("\"")?;
            write!(Escaped(out), "{value}")?;
            out.write_str("\"")
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |out| {
            out.write_str("\"")?;
            write!(Escaped(out), "{value:?}")?;
            out.write_str("\"")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_json_object_with_fields_in_order() {
        use tracing_subscriber::prelude::*;
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(move || Sink(sink.clone()));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("conn", client.addr = "127.0.0.1:1");
            let _entered = span.enter();
            tracing::info!(
                target: "egressd::audit",
                name = "a\"b",
                n = 7u64,
                neg = -3i64,
                ms = 2.5f64,
                nan = f64::NAN,
                ok = true,
                shown = %"x\ny",
                "request"
            );
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "request");
        assert_eq!(v["name"], "a\"b");
        assert_eq!(v["n"], 7);
        assert_eq!(v["neg"], -3);
        assert_eq!(v["ms"], 2.5);
        assert!(v["nan"].is_null());
        assert_eq!(v["ok"], true);
        assert_eq!(v["shown"], "x\ny");
        assert_eq!(v["spans"], "conn{client.addr=\"127.0.0.1:1\"}");
        assert_eq!(v["target"], "egressd::audit");
        let ts = v["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        let keys: Vec<&str> = text
            .split("\":")
            .filter_map(|k| k.rsplit("\"").next())
            .collect();
        let order = ["timestamp", "level", "message", "name", "n", "neg", "ms"];
        assert_eq!(&keys[..order.len()], order, "{text}");
    }

    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
