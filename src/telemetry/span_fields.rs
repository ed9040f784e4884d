//! How a span's fields are kept for the JSON log lines: as the text of a JSON object, each recorded
//! field written into it as a member, ready to be copied into every line written inside the span
//! ([`super::json_line`]).
//!
//! `tracing-subscriber`'s own `JsonFields` gathers every record into a map of `serde_json::Value`s
//! and rewrites the span's whole object each time, and its JSON format parses that object back for
//! every line. A request's root span records a field at each phase (client IP, user, status,
//! latency, the rate limits' decision, Proof's status and latency), so that was about ten maps and
//! a parse per request. Here a field is written once, as text; a field recorded again replaces its
//! member, so the last value wins, as with `JsonFields`. Members are in the order they were first
//! recorded (`JsonFields` sorted them): the same JSON object.

use std::fmt;

use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::Writer;

use super::json_text::{self, FieldValue, Fields};

/// Room for a request span's fields once all are recorded: about 330 bytes with an IPv4 address and
/// Proof's request id, more with an IPv6 address or a long user id.
const SPAN_FIELDS_CAPACITY: usize = 512;

/// The span fields of the JSON lines: a JSON object's text, members written in place.
#[derive(Debug, Default)]
pub struct AppendedJsonFields;

impl<'writer> FormatFields<'writer> for AppendedJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut object = String::from("{}");
        let mut members = Members::new(&mut object);
        fields.record(&mut members);
        members.0.result?;
        writer.write_str(&object)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &Record<'_>,
    ) -> fmt::Result {
        if current.fields.is_empty() {
            current.fields.push_str("{}");
        }
        // A span's first field is formatted into exactly the room it needs; the fields recorded
        // later (a request's span gets about ten) would otherwise regrow it several times.
        if current.fields.capacity() < SPAN_FIELDS_CAPACITY {
            current
                .fields
                .reserve(SPAN_FIELDS_CAPACITY - current.fields.len());
        }
        let mut members = Members::new(&mut current.fields);
        fields.record(&mut members);
        members.0.result
    }
}

/// Writes each field into `object` (always a whole object: `{` ... `}`) as a member, replacing
/// the member of the same name, its value written as `JsonFields` writes it; a `r#` prefix is
/// dropped from names, as `JsonFields` does.
struct Members<'a> {
    object: &'a mut String,
    result: fmt::Result,
}

impl<'a> Members<'a> {
    fn new(object: &'a mut String) -> Fields<Self> {
        Fields(Self {
            object,
            result: Ok(()),
        })
    }
}

impl json_text::Members for Members<'_> {
    fn member(&mut self, name: &str, value: FieldValue<'_>) {
        if self.result.is_ok() {
            self.result = set_member(self.object, name, |out| value.write_to(out));
        }
    }
}

fn set_member(
    object: &mut String,
    name: &str,
    write_value: impl FnOnce(&mut String) -> fmt::Result,
) -> fmt::Result {
    let name = name.strip_prefix("r#").unwrap_or(name);
    remove_member(object, name)?;
    // `{...}` loses its closing brace, gains `,"name":value` (no comma after `{`) and gets it back.
    if object.pop() != Some('}') {
        return Err(fmt::Error);
    }
    if object.len() > 1 {
        object.push(',');
    }
    json_text::write_str(object, name)?;
    object.push(':');
    write_value(object)?;
    object.push('}');
    Ok(())
}

/// Takes the member named `name` out of `object`, with the comma that joined it to the others.
fn remove_member(object: &mut String, name: &str) -> fmt::Result {
    // Field names are identifiers, never escaped: a name that occurs nowhere in the text is no
    // member's. That is the common case, a field recorded for the first time, and it needs no walk
    // over the object.
    if !json_text::is_escaped(name) && !object.contains(name) {
        return Ok(());
    }
    let mut quoted = String::with_capacity(name.len() + 2);
    json_text::write_str(&mut quoted, name)?;
    if let Some(member) = member_range(object, &quoted).ok_or(fmt::Error)? {
        object.replace_range(member, "");
    }
    Ok(())
}

/// Where the member whose key is `quoted` (a JSON string, quotes included) is in `object`, with
/// the comma that joins it to the others; `Some(None)` when there is none, `None` when `object` is
/// not what this module writes: string keys, and values that are strings, numbers, `true`,
/// `false`, `null` or arrays of numbers.
fn member_range(object: &str, quoted: &str) -> Option<Option<std::ops::Range<usize>>> {
    let bytes = object.as_bytes();
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let mut at = 1;
    while bytes.get(at)? != &b'}' {
        let member_start = at;
        let key_end = string_end(bytes, at)?;
        if bytes.get(key_end) != Some(&b':') {
            return None;
        }
        let value_end = value_end(bytes, key_end + 1)?;
        let next = bytes.get(value_end)?;
        if object[member_start..key_end] == *quoted {
            // With the comma after it, or else (the last member) the one before it.
            return Some(Some(if *next == b',' {
                member_start..value_end + 1
            } else if member_start > 1 {
                member_start - 1..value_end
            } else {
                member_start..value_end
            }));
        }
        at = if *next == b',' {
            value_end + 1
        } else {
            value_end
        };
    }
    Some(None)
}

/// The index just past the JSON string that starts at `start` (its opening quote).
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    if bytes.get(start) != Some(&b'"') {
        return None;
    }
    let mut at = start + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

/// The index just past the value that starts at `start` (after a member's colon).
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'[' => Some(start + bytes[start..].iter().position(|&byte| byte == b']')? + 1),
        _ => Some(
            start
                + bytes[start..]
                    .iter()
                    .position(|&byte| byte == b',' || byte == b'}')?,
        ),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::captured_lines::keys_of;
    use super::*;

    fn set(object: &str, name: &str, value: FieldValue<'_>) -> String {
        let mut object = object.to_owned();
        set_member(&mut object, name, |out| value.write_to(out)).unwrap();
        object
    }

    #[test]
    fn a_member_set_again_moves_to_the_end_with_its_new_value() {
        let three = r#"{"a":"x\",\"b\":1}","b":[1,2],"c":2.5}"#;
        for (name, expected) in [
            ("a", r#"{"b":[1,2],"c":2.5,"a":true}"#),
            ("b", r#"{"a":"x\",\"b\":1}","c":2.5,"b":true}"#),
            ("c", r#"{"a":"x\",\"b\":1}","b":[1,2],"c":true}"#),
            ("d", r#"{"a":"x\",\"b\":1}","b":[1,2],"c":2.5,"d":true}"#),
        ] {
            assert_eq!(set(three, name, FieldValue::Bool(true)), expected);
        }
        assert_eq!(set("{}", "a", FieldValue::U64(1)), r#"{"a":1}"#);
        assert_eq!(set(r#"{"a":1}"#, "a", FieldValue::U64(2)), r#"{"a":2}"#);
        assert_eq!(
            set(r#"{"a":1}"#, "r#type", FieldValue::Str("t")),
            r#"{"a":1,"type":"t"}"#
        );
        // A name found only inside a value is not a member's.
        assert_eq!(
            set(r#"{"a":"b"}"#, "b", FieldValue::Str("}")),
            r#"{"a":"b","b":"}"}"#
        );
    }

    #[test]
    fn an_object_not_written_here_is_refused_not_mangled() {
        let mut object = r#"{"a":1"#.to_owned();
        assert!(set_member(&mut object, "a", |out| FieldValue::U64(2).write_to(out)).is_err());
    }

    /// A value of each kind `set_member` writes, text drawn to include what JSON escapes and
    /// what looks like the object's own syntax.
    fn any_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<u64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            // Quarters: read back exactly (serde_json's reading of other floats may differ in
            // the last digit from the shortest text that was written).
            (-4_000_000i32..4_000_000).prop_map(|n| serde_json::Value::from(f64::from(n) / 4.0)),
            "[a-z\\\\\"{}:,\\[\\] \\n\\t\\u{1}é]{0,12}".prop_map(serde_json::Value::from),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(serde_json::Value::from),
        ]
    }

    fn set_json(object: &mut String, name: &str, value: &serde_json::Value) {
        set_member(object, name, |out| match value {
            serde_json::Value::String(text) => FieldValue::Str(text).write_to(out),
            serde_json::Value::Bool(flag) => FieldValue::Bool(*flag).write_to(out),
            serde_json::Value::Array(bytes) => {
                let bytes: Vec<u8> = bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect();
                FieldValue::Bytes(&bytes).write_to(out)
            }
            serde_json::Value::Number(number) => match (number.as_u64(), number.as_i64()) {
                (Some(unsigned), _) => FieldValue::U64(unsigned).write_to(out),
                (None, Some(signed)) => FieldValue::I64(signed).write_to(out),
                _ => FieldValue::F64(number.as_f64().unwrap()).write_to(out),
            },
            _ => unreachable!("no other kind is drawn"),
        })
        .unwrap();
    }

    proptest! {
        /// Whatever is recorded, in whatever order and however often, the kept text is one JSON
        /// object with each name once, holding the last value recorded for it.
        #[test]
        fn the_kept_object_holds_each_name_once_with_its_last_value(
            records in proptest::collection::vec(
                (proptest::sample::select(vec!["a", "b", "ab", "user_id", "proof.status", "r#type"]),
                 any_value()),
                0..24,
            )
        ) {
            let mut object = String::from("{}");
            let mut expected = serde_json::Map::new();
            for (name, value) in &records {
                set_json(&mut object, name, value);
                expected.insert(name.trim_start_matches("r#").to_owned(), value.clone());
            }
            let kept: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&object).unwrap();
            prop_assert_eq!(&kept, &expected);
            // Each name once in the text itself, not only once in the map read from it.
            let names = keys_of(&object).len();
            prop_assert_eq!(names, expected.len());
        }
    }
}
