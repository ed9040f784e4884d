//! How a span's fields are kept for the JSON log lines: as a JSON object that each recorded field
//! is appended to.
//!
//! `tracing-subscriber`'s own `JsonFields` parses the span's whole object and writes it anew for
//! every `Span::record`, so a request's root span, which records a field at each phase (client IP,
//! user, status, latency, the rate limits' decision, Proof's status and latency), was re-read about
//! ten times per request. Appending gives the same lines: when the line is written the object is
//! read into a sorted map, where a field recorded twice keeps its last value, as before.

use std::fmt;

use tracing::span::Record;
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{JsonVisitor, Writer};

/// The span fields of the JSON format, appended to instead of rewritten.
#[derive(Debug, Default)]
pub struct AppendedJsonFields;

impl<'writer> FormatFields<'writer> for AppendedJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = JsonVisitor::new(&mut writer);
        fields.record(&mut visitor);
        visitor.finish()
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        // `{"a":1}` and `{"b":2}` make `{"a":1,"b":2}`: the new object is written in place of the
        // closing brace, and its opening brace becomes the comma (no string of its own).
        if !current.fields.ends_with('}') {
            return Err(fmt::Error);
        }
        current.fields.pop();
        let start = current.fields.len();
        let mut writer = current.as_writer();
        let mut visitor = JsonVisitor::new(&mut writer);
        fields.record(&mut visitor);
        let written = visitor.finish();
        if written.is_err() || current.fields[start..] == *"{}" {
            current.fields.truncate(start);
            current.fields.push('}');
            return written;
        }
        if start == 1 {
            // The kept object was `{}`.
            current.fields.remove(start);
        } else {
            current.fields.replace_range(start..=start, ",");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::Empty;
    use tracing_subscriber::fmt::format::JsonFields;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines a request-like span writes, its fields kept by `fields`, without timestamps.
    fn lines_with<N>(fields: N) -> Vec<serde_json::Value>
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .fmt_fields(fields)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "http_request",
                http.route = "/start-checkout",
                request_id = "r-1",
                client_ip = Empty,
                user_id = Empty,
                latency_ms = Empty,
                quoted = Empty,
            );
            let _entered = span.enter();
            tracing::info!("before anything is recorded");
            span.record("client_ip", "203.0.113.7");
            span.record("user_id", "user \"42\"\n");
            tracing::warn!(limit = "per_ip", "between records");
            span.record("latency_ms", 1.25);
            span.record("user_id", "user-43");
            span.record("quoted", tracing::field::display("a,b}c{"));
            tracing::info!(status = 200, "request completed");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let mut line: serde_json::Value = serde_json::from_str(line).unwrap();
                line.as_object_mut().unwrap().remove("timestamp");
                line
            })
            .collect()
    }

    /// The lines of a span that starts with no value at all (its object is `{}`).
    fn lines_of_an_empty_span_with<N>(fields: N) -> Vec<serde_json::Value>
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .fmt_fields(fields)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("empty", first = Empty, second = Empty);
            let _entered = span.enter();
            tracing::info!("nothing recorded");
            span.record("first", 1);
            tracing::info!("one recorded");
            span.record("second", "two");
            tracing::info!("both recorded");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let mut line: serde_json::Value = serde_json::from_str(line).unwrap();
                line.as_object_mut().unwrap().remove("timestamp");
                line["span"].clone()
            })
            .collect()
    }

    #[test]
    fn a_span_that_starts_empty_gets_its_fields_appended() {
        let appended = lines_of_an_empty_span_with(AppendedJsonFields);
        assert_eq!(appended, lines_of_an_empty_span_with(JsonFields::new()));
        assert_eq!(
            appended,
            [
                serde_json::json!({"name": "empty"}),
                serde_json::json!({"first": 1, "name": "empty"}),
                serde_json::json!({"first": 1, "second": "two", "name": "empty"}),
            ]
        );
    }

    #[test]
    fn appended_fields_write_the_lines_rewritten_fields_write() {
        let appended = lines_with(AppendedJsonFields);
        assert_eq!(appended, lines_with(JsonFields::new()));
        assert_eq!(appended.len(), 3);
        let last = &appended[2]["span"];
        assert_eq!(last["user_id"], "user-43", "the last value recorded wins");
        assert_eq!(last["quoted"], "a,b}c{");
        assert_eq!(last["client_ip"], "203.0.113.7");
        assert_eq!(appended[1]["span"]["user_id"], "user \"42\"\n");
    }
}
