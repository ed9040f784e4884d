//! What a user id and an email must look like, whichever session source produced them.

pub(super) const MAX_USER_ID_CHARS: usize = 256;
/// RFC 5321 limits: 64 (local part) + 1 + 255 (domain).
pub(super) const MAX_EMAIL_CHARS: usize = 320;

/// Whether `value` may be used as a user id, whatever source it came from (a session token
/// today; an auth proxy's header or the app's forward-auth answer alike): non-empty, at most 256
/// characters, and free of characters that are invisible or control the display.
///
/// The id ends up in logs, in the request to Proof and in Proof's records. Control characters
/// (general category Cc) could forge log lines; format characters (Cf: bidirectional overrides
/// such as U+202E, zero-width spaces and joiners, U+FEFF) make two ids that look the same differ,
/// or one id display as another; line and paragraph separators (Zl, Zp) break lines like a
/// newline does. None of them belongs in an identifier.
pub fn is_valid_user_id(value: &str) -> bool {
    !value.is_empty()
        && value.chars().count() <= MAX_USER_ID_CHARS
        && !value.chars().any(is_hidden_or_control)
}

fn is_hidden_or_control(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    // ASCII ids are the common case: only its control characters are Cc, and none is Cf.
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// Deliberately shallow: the identity provider owns address validation; this only guarantees the
/// shape downstream code relies on (one `@`, both sides present, nothing that could break a
/// header or a log line).
pub(super) fn is_valid_email(value: &str) -> bool {
    if value.is_empty() || value.chars().count() > MAX_EMAIL_CHARS {
        return false;
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match value.split_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty() && !domain.contains('@'),
        None => false,
    }
}
