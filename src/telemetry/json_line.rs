//! The JSON log line: what `tracing-subscriber`'s JSON format writes (`timestamp`, `level`,
//! `fields`, `target`, and the current span's fields with its `name` under `span`), written
//! straight into the line.
//!
//! The stock format serialises the event's fields through `serde`, and parses the span's fields
//! back from their JSON text for every line; here the span's text, which [`AppendedJsonFields`]
//! keeps as a JSON object, is copied in as it is. The lines are the same JSON: the tests below
//! compare them with the stock format's, field for field.

use std::fmt::{self, Write};

use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::json_text::{self, FieldValue, Fields};
use super::span_fields::AppendedJsonFields;

/// The JSON log line's format.
#[derive(Debug, Default)]
pub struct JsonLine;

impl<S> FormatEvent<S, AppendedJsonFields> for JsonLine
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, AppendedJsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // A `log` record's own target, not `log`'s.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());

        writer.write_str("{\"timestamp\":\"")?;
        // RFC 3339 digits, `T`, `:`, `.` and `Z`: nothing to escape.
        SystemTime.format_time(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_str("\",\"fields\":{")?;
        let mut fields = Fields(EventFields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        });
        event.record(&mut fields);
        fields.0.result?;
        writer.write_str("},\"target\":")?;
        json_text::write_str(&mut writer, meta.target())?;

        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            writer.write_str(",\"span\":")?;
            let extensions = span.extensions();
            let members = extensions
                .get::<FormattedFields<AppendedJsonFields>>()
                .and_then(|kept| kept.fields.strip_suffix('}'))
                .filter(|members| members.starts_with('{'))
                .unwrap_or("{");
            writer.write_str(members)?;
            if members.len() > 1 {
                writer.write_char(',')?;
            }
            writer.write_str("\"name\":")?;
            json_text::write_str(&mut writer, span.name())?;
            writer.write_char('}')?;
        }
        writer.write_str("}\n")
    }
}

/// The event's fields as members of `fields`, in the order they were given, as `tracing-serde`
/// writes them (which the stock format uses): as [`FieldValue::write_to`] does, but bytes as the
/// `Debug` text `tracing` gives them (hex), and names as they are.
struct EventFields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl json_text::Members for EventFields<'_, '_> {
    fn member(&mut self, name: &str, value: FieldValue<'_>) {
        if self.result.is_err() {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.out.write_char(',')?;
            }
            json_text::write_str(self.out, name)?;
            self.out.write_char(':')?;
            match value {
                FieldValue::Bytes(bytes) => json_text::write_debug(self.out, &HexBytes(bytes)),
                value => value.write_to(self.out),
            }
        })();
    }
}

/// Bytes as `tracing`'s `Visit::record_bytes` shows them: `[0a ff]`.
struct HexBytes<'a>(&'a [u8]);

impl fmt::Debug for HexBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('[')?;
        for (index, byte) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_char(' ')?;
            }
            write!(f, "{byte:02x}")?;
        }
        f.write_char(']')
    }
}

#[cfg(test)]
mod tests {
    use tracing::field::{Empty, display};
    use tracing_subscriber::layer::SubscriberExt;

    use super::super::captured_lines::{CapturedLines, keys_of};
    use super::*;

    /// Events of every kind the service writes: outside any span, in a request-like span whose
    /// fields are recorded one by one (one of them twice), in a child span, with an explicit
    /// parent, in a span that starts with no value, with values of every type and text that needs
    /// escaping, and a `log` record.
    fn write_events() {
        tracing::info!("outside any span");
        let span = tracing::info_span!(
            "http_request",
            http.method = %"POST",
            http.route = "/start-checkout",
            request_id = "r-1",
            client_ip = Empty,
            user_id = Empty,
            latency_ms = Empty,
            quoted = Empty,
            r#type = Empty,
            raw = Empty,
            empty_at_the_end = Empty,
        );
        let entered = span.enter();
        tracing::info!("before anything is recorded");
        span.record("client_ip", display("203.0.113.7"));
        span.record("user_id", "user \"42\"\n\u{1}");
        tracing::warn!(limit = "per_ip", retry_after_s = 3u64, "between records");
        span.record("latency_ms", 1.25);
        span.record("user_id", "user-43");
        span.record("quoted", display("a,b}c{\":"));
        span.record("type", "raw name");
        span.record("raw", &b"\x00\x7f\xff"[..]);
        tracing::error!(
            float = 0.1,
            not_a_number = f64::NAN,
            negative = -7i64,
            flag = true,
            text = "tab\t \\ \"q\"",
            debug = ?Some("x"),
            wide = 1u128 << 100,
            bytes = &b"\x00\xff"[..],
            error = &std::io::Error::other("broken pipe") as &(dyn std::error::Error + 'static),
            "every type: {}",
            "formatted"
        );
        {
            let child = tracing::info_span!("proof_call", attempt = 1u64);
            let _child = child.enter();
            tracing::info!(status = 200u64, "in the child span");
        }
        drop(entered);
        tracing::info!(parent: &span, "with an explicit parent");
        let empty = tracing::info_span!("empty", only = Empty);
        empty.in_scope(|| tracing::info!("in a span with no value"));
        empty.record("only", 1u64);
        empty.in_scope(|| tracing::info!("in a span given its first value"));
        span.in_scope(|| {
            tracing_log::format_trace(
                &log::Record::builder()
                    .level(log::Level::Warn)
                    .target("awc::client")
                    .module_path(Some("awc::client::pool"))
                    .file(Some("pool.rs"))
                    .line(Some(7))
                    .args(format_args!("a dependency's record"))
                    .build(),
            )
            .unwrap();
        });
    }

    fn ours() -> String {
        let out = CapturedLines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(AppendedJsonFields)
                .event_format(JsonLine)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, write_events);
        out.text()
    }

    fn stock() -> String {
        let out = CapturedLines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, write_events);
        out.text()
    }

    /// A line read as JSON, its timestamp checked for shape and taken out.
    fn without_timestamp(line: &str) -> serde_json::Value {
        let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
        let timestamp = value.as_object_mut().unwrap().remove("timestamp").unwrap();
        let timestamp = timestamp.as_str().unwrap();
        // 2026-11-26T04:54:01.123456Z
        assert_eq!(timestamp.len(), 27, "{timestamp}");
        assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T');
        value
    }

    #[test]
    fn lines_are_the_stock_json_format_s() {
        let ours = ours();
        let stock = stock();
        assert_eq!(ours.lines().count(), 9);
        assert_eq!(ours.lines().count(), stock.lines().count());
        for (ours, stock) in ours.lines().zip(stock.lines()) {
            assert_eq!(without_timestamp(ours), without_timestamp(stock), "{ours}");
        }
    }

    #[test]
    fn the_last_value_recorded_wins_and_no_name_is_written_twice() {
        let text = ours();
        let lines: Vec<&str> = text.lines().collect();
        let every_type = without_timestamp(lines[3]);
        let span = &every_type["span"];
        assert_eq!(span["user_id"], "user-43");
        assert_eq!(span["quoted"], "a,b}c{\":");
        assert_eq!(span["type"], "raw name");
        assert_eq!(span["name"], "http_request");
        assert_eq!(
            every_type["fields"]["not_a_number"],
            serde_json::Value::Null
        );
        assert_eq!(every_type["fields"]["message"], "every type: formatted");
        for line in &lines {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(span) = value.get("span") {
                let keys = keys_of(&line[line.find("\"span\":").unwrap() + 7..]);
                let mut unique = keys.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(keys.len(), unique.len(), "{line}");
                assert_eq!(keys.len(), span.as_object().unwrap().len());
            }
        }
        assert_eq!(without_timestamp(lines[7])["span"]["only"], 1);
        let log_record = without_timestamp(lines[8]);
        assert_eq!(log_record["target"], "awc::client");
        assert_eq!(log_record["level"], "WARN");
        assert_eq!(log_record["span"]["request_id"], "r-1");
    }
}
