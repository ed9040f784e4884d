//! The event stream's wire format (Server-Sent Events) and the order of Proof's statuses, which
//! decides what is news to a browser: `pending` → `processing` → `completed` | `failed` |
//! `cancelled`, never backwards, each at most once.

use bytes::{BufMut, Bytes, BytesMut};

use crate::proof::transaction_status;

/// A comment line that keeps the connection (and any proxy on the way) from timing out, and lets
/// the server notice a browser that went away.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";

/// Longest status accepted from Proof; its statuses are short words.
const MAX_STATUS_LEN: usize = 32;

/// A transaction as Proof last reported it: its status, and Proof's JSON on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub status: Box<str>,
    pub data: Bytes,
}

impl Snapshot {
    /// From Proof's `GET /widget/transactions/{id}` answer. `None` without a usable status: a
    /// status becomes the event's `id:` line, so only short words of letters, digits, `_` and `-`
    /// pass.
    pub fn from_transaction(body: &Bytes) -> Option<Self> {
        let status = transaction_status(body)?;
        if !is_status_word(&status) {
            return None;
        }
        let status = status.into();
        // An event's data is one line: Proof's bytes as they are, unless they hold a line break.
        let data = if body.iter().any(|&b| b == b'\n' || b == b'\r') {
            let value: serde_json::Value = serde_json::from_slice(body).ok()?;
            Bytes::from(serde_json::to_vec(&value).ok()?)
        } else {
            body.clone()
        };
        Some(Self { status, data })
    }

    pub fn is_terminal(&self) -> bool {
        is_terminal(&self.status)
    }

    /// `event: status`, `id: <status>`, `data: <JSON>`.
    pub fn event(&self) -> Bytes {
        let mut event = BytesMut::with_capacity(32 + self.status.len() + self.data.len());
        event.put_slice(b"event: status\nid: ");
        event.put_slice(self.status.as_bytes());
        event.put_slice(b"\ndata: ");
        event.put_slice(&self.data);
        event.put_slice(b"\n\n");
        event.freeze()
    }
}

fn is_status_word(status: &str) -> bool {
    (1..=MAX_STATUS_LEN).contains(&status.len())
        && status
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Where a status stands in the lifecycle; `None` for one Proof has not documented.
fn rank(status: &str) -> Option<u8> {
    match status {
        "pending" => Some(0),
        "processing" => Some(1),
        "completed" | "failed" | "cancelled" => Some(2),
        _ => None,
    }
}

/// `completed`, `failed` or `cancelled`: nothing follows.
pub fn is_terminal(status: &str) -> bool {
    rank(status) == Some(2)
}

/// Whether `next` is news to a browser that last saw `seen` (its `Last-Event-ID`): another
/// status, and not one from before `seen`. An undocumented status is news when it differs.
pub fn is_news(seen: Option<&str>, next: &str) -> bool {
    let Some(seen) = seen else {
        return true;
    };
    if seen == next {
        return false;
    }
    match (rank(seen), rank(next)) {
        (Some(seen), Some(next)) => next > seen,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_later_statuses_are_news() {
        assert!(is_news(None, "pending"));
        assert!(is_news(Some("pending"), "processing"));
        assert!(is_news(Some("processing"), "completed"));
        assert!(!is_news(Some("processing"), "processing"));
        assert!(!is_news(Some("processing"), "pending"));
        assert!(!is_news(Some("completed"), "failed"));
        assert!(is_news(Some("processing"), "on_hold"));
        assert!(is_news(Some("garbage"), "pending"));
    }

    #[test]
    fn a_snapshot_is_one_event_of_proofs_json_on_one_line() {
        let body = Bytes::from_static(b"{\"status\":\"processing\", \"x\" : 1}");
        let snapshot = Snapshot::from_transaction(&body).unwrap();
        assert_eq!(
            &snapshot.event()[..],
            b"event: status\nid: processing\ndata: {\"status\":\"processing\", \"x\" : 1}\n\n"
        );
        let pretty = Bytes::from_static(b"{\n  \"status\": \"pending\",\r\n  \"x\": 1\n}");
        let snapshot = Snapshot::from_transaction(&pretty).unwrap();
        assert_eq!(&snapshot.data[..], b"{\"status\":\"pending\",\"x\":1}");
    }

    #[test]
    fn a_status_that_could_break_the_stream_is_refused() {
        for body in [
            &b"{\"status\":\"done\\nevent: x\"}"[..],
            b"{\"status\":\"\"}",
            b"{\"status\":7}",
            b"{\"id\":\"no status\"}",
            b"[\"pending\"]",
        ] {
            assert_eq!(
                Snapshot::from_transaction(&Bytes::copy_from_slice(body)),
                None
            );
        }
    }
}
