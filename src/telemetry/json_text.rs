//! JSON values written as text straight into a log line: the same text `serde_json` writes for
//! them, without building a `serde_json::Value`, a map or a string of their own first.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};

/// `value` as a JSON string, quotes included.
pub(super) fn write_str(out: &mut (impl Write + ?Sized), value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(value)?;
    out.write_char('"')
}

/// `value`'s `Debug` text as a JSON string, formatted straight into `out`.
pub(super) fn write_debug(out: &mut (impl Write + ?Sized), value: &dyn fmt::Debug) -> fmt::Result {
    out.write_char('"')?;
    write!(Escaped(out), "{value:?}")?;
    out.write_char('"')
}

/// A float as `serde_json` writes it: the shortest text that reads back the same, and `null` for
/// NaN and the infinities, which JSON has no number for.
pub(super) fn write_f64(out: &mut (impl Write + ?Sized), value: f64) -> fmt::Result {
    // 32 bytes hold any f64 serde_json writes (at most 24).
    let mut buffer = [0u8; 32];
    let mut unwritten = &mut buffer[..];
    serde_json::to_writer(&mut unwritten, &value).map_err(|_| fmt::Error)?;
    let written = 32 - unwritten.len();
    let text = std::str::from_utf8(&buffer[..written]).map_err(|_| fmt::Error)?;
    out.write_str(text)
}

/// A field's value, for a JSON line.
#[derive(Clone, Copy)]
pub(super) enum FieldValue<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(&'a str),
    Bytes(&'a [u8]),
    /// Any other value (an `i128`, an error, a `Display` or `Debug` value), as its `Debug` text.
    Debug(&'a dyn fmt::Debug),
}

impl FieldValue<'_> {
    /// As `serde_json` writes the same value: numbers and booleans as such (a float that is not
    /// finite as `null`), text and `Debug` text as strings, bytes as an array of numbers.
    pub(super) fn write_to(self, out: &mut (impl Write + ?Sized)) -> fmt::Result {
        match self {
            Self::F64(value) => write_f64(out, value),
            Self::I64(value) => write!(out, "{value}"),
            Self::U64(value) => write!(out, "{value}"),
            Self::Bool(value) => write!(out, "{value}"),
            Self::Str(value) => write_str(out, value),
            Self::Debug(value) => write_debug(out, value),
            Self::Bytes(value) => {
                out.write_char('[')?;
                for (index, byte) in value.iter().enumerate() {
                    if index > 0 {
                        out.write_char(',')?;
                    }
                    write!(out, "{byte}")?;
                }
                out.write_char(']')
            }
        }
    }
}

/// What a [`Fields`] visitor hands each field to.
pub(super) trait Members {
    fn member(&mut self, name: &str, value: FieldValue<'_>);
}

/// Visits a span's or an event's fields, handing each to `M` with its value.
pub(super) struct Fields<M>(pub M);

impl<M: Members> Visit for Fields<M> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.member(field.name(), FieldValue::F64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.member(field.name(), FieldValue::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.member(field.name(), FieldValue::U64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.member(field.name(), FieldValue::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.member(field.name(), FieldValue::Str(value));
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        self.0.member(field.name(), FieldValue::Bytes(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.member(field.name(), FieldValue::Debug(value));
    }
}

/// Writes what it is given with JSON's string escapes, as `serde_json` does: `\"`, `\\`, the short
/// escapes `\b \t \n \f \r`, and `\u00XX` for the other control characters; nothing else (not
/// `/`, not DEL, not non-ASCII text). Pieces can be escaped one by one: only ASCII is escaped.
struct Escaped<'a, W: ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Most text has nothing to escape: one pass to find that out, then one copy.
        if !is_escaped(text) {
            return self.0.write_str(text);
        }
        let mut unescaped_from = 0;
        for (at, byte) in text.bytes().enumerate() {
            let short = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0x08 => "\\b",
                0x0c => "\\f",
                0x00..=0x1f => "",
                _ => continue,
            };
            // `at` is an ASCII byte's index, so a character boundary.
            self.0.write_str(&text[unescaped_from..at])?;
            if short.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(short)?;
            }
            unescaped_from = at + 1;
        }
        self.0.write_str(&text[unescaped_from..])
    }
}

/// Whether `text` is written differently inside a JSON string.
pub(super) fn is_escaped(text: &str) -> bool {
    text.bytes()
        .any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        every_ascii.push_str("é → \u{2028} 😀 </script>");
        for value in [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "tab\tline\nreturn\r",
            every_ascii.as_str(),
        ] {
            let mut written = String::new();
            write_str(&mut written, value).unwrap();
            assert_eq!(written, serde_json::to_string(value).unwrap());
        }
    }

    #[test]
    fn debug_text_is_a_json_string() {
        let mut written = String::new();
        write_debug(&mut written, &"a \"quoted\"\nvalue").unwrap();
        assert_eq!(
            written,
            serde_json::to_string(&format!("{:?}", "a \"quoted\"\nvalue")).unwrap()
        );
    }

    #[test]
    fn floats_are_written_as_serde_json_writes_them() {
        for value in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1.25,
            123456.789,
            1e-7,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut written = String::new();
            write_f64(&mut written, value).unwrap();
            assert_eq!(written, serde_json::to_string(&value).unwrap(), "{value}");
        }
    }
}
