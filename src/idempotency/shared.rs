//! The store in the shared Redis (`rate_limit.backend = "redis"`), so a retry that lands on
//! another replica sees the first request: the lock is taken with `SET NX PX` (it expires by itself
//! if its replica dies), and replaced by the answer, or freed, by a script that first checks the
//! lock is still this request's (`redis_finish.lua`). One key per entry, so a cluster needs nothing
//! more.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use bytes::Bytes;

use super::{Entry, Fingerprint, StoredAnswer};
use crate::shared_redis::{BackendError, LuaScript, RedisLink};

const FINISH_SCRIPT: &str = include_str!("redis_finish.lua");

const IN_FLIGHT: u8 = b'L';
const DONE: u8 = b'D';

#[derive(Debug)]
pub struct RedisStore {
    link: Arc<RedisLink>,
    finish: LuaScript,
}

impl RedisStore {
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self {
            link,
            finish: LuaScript::new(FINISH_SCRIPT),
        }
    }

    /// Takes `key` with `lock` (`None`), or gives back the entry that holds it.
    ///
    /// A call that goes unanswered (our timeout, a broken connection, a client that left while it
    /// waited) may still take the key once Redis gets to it; no request would then hold the lock,
    /// yet retries would be refused as in progress until it expired. So each call here is followed,
    /// unless answered, by freeing the key if `lock` (unique to this request) holds it, on the same
    /// connection, so it runs after the `SET` whenever that lands.
    pub(super) async fn claim(
        &self,
        key: &str,
        lock: &Entry,
        lock_ttl: Duration,
    ) -> Result<Option<Entry>, BackendError> {
        let busy = lock.clone();
        let lock = encode(lock);
        // The entry may vanish between SET and GET (its lock freed or expired): then try again
        // once; a key that comes and goes that fast is busy, and the caller hears so.
        for _ in 0..2 {
            let mut set = redis::cmd("SET");
            set.arg(key)
                .arg(&lock)
                .arg("NX")
                .arg("PX")
                .arg(millis(lock_ttl));
            let taken: Option<String> = self.claiming(set, key, &lock, lock_ttl).await?;
            if taken.is_some() {
                return Ok(None);
            }
            let mut get = redis::cmd("GET");
            get.arg(key);
            let current: Option<Vec<u8>> = self.claiming(get, key, &lock, lock_ttl).await?;
            match current {
                // Our own lock: a SET sent again after its connection was lost had landed the
                // first time (see `RedisLink`).
                Some(current) if current == lock => return Ok(None),
                // A value this service did not write: the key is busy, not replayable.
                Some(current) => return Ok(Some(decode(&current).unwrap_or(busy))),
                None => {}
            }
        }
        Ok(Some(busy))
    }

    /// One call of a claim, undone unless answered (see [`claim`](Self::claim)); the undo is
    /// abandoned once the lock would have expired anyway.
    async fn claiming<T>(
        &self,
        command: redis::Cmd,
        key: &str,
        lock: &[u8],
        lock_ttl: Duration,
    ) -> Result<T, BackendError>
    where
        T: redis::FromRedisValue + Send + 'static,
    {
        self.link
            .query_or_undo(command, release_command(key, lock), lock_ttl)
            .await
    }

    /// Replaces `lock` with `done` if `lock` still holds the key; `Ok(false)` if it does not.
    pub(super) async fn finish(
        &self,
        key: &str,
        lock: &Entry,
        done: &Entry,
        keep_for: Duration,
    ) -> Result<bool, BackendError> {
        let replaced: i64 = self
            .link
            .eval(
                &self.finish,
                key.to_owned(),
                (encode(lock), encode(done), millis(keep_for)),
            )
            .await?;
        Ok(replaced == 1)
    }

    /// Frees the key if `lock` still holds it, in the background: the request that held it has
    /// its answer already, or is gone.
    pub(super) fn release_detached(&self, key: &str, lock: &Entry) {
        self.link
            .spawn_detached(release_command(key, &encode(lock)));
    }
}

/// Frees `key` if `lock` (encoded) holds it. By the script's text, not its SHA1: it runs in the
/// background, where nothing would send the text again to a Redis that lost its scripts.
fn release_command(key: &str, lock: &[u8]) -> redis::Cmd {
    let mut eval = redis::cmd("EVAL");
    eval.arg(FINISH_SCRIPT)
        .arg(1)
        .arg(key)
        .arg(lock)
        .arg("")
        .arg(0);
    eval
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// `L` fingerprint token, or `D` fingerprint status content-type-length content-type body.
fn encode(entry: &Entry) -> Vec<u8> {
    match entry {
        Entry::InFlight { fingerprint, token } => {
            let mut out = Vec::with_capacity(1 + 32 + 16);
            out.push(IN_FLIGHT);
            out.extend_from_slice(fingerprint.as_bytes());
            out.extend_from_slice(&token.to_be_bytes());
            out
        }
        Entry::Done {
            fingerprint,
            answer,
        } => {
            let content_type = answer
                .content_type
                .as_ref()
                .map_or(&[][..], |v| v.as_bytes());
            let mut out = Vec::with_capacity(1 + 32 + 4 + content_type.len() + answer.body.len());
            out.push(DONE);
            out.extend_from_slice(fingerprint.as_bytes());
            out.extend_from_slice(&answer.status.as_u16().to_be_bytes());
            // Header values this long are refused long before they get here.
            let length = u16::try_from(content_type.len()).unwrap_or(0);
            out.extend_from_slice(&length.to_be_bytes());
            out.extend_from_slice(&content_type[..usize::from(length)]);
            out.extend_from_slice(&answer.body);
            out
        }
    }
}

fn decode(bytes: &[u8]) -> Option<Entry> {
    let (&tag, rest) = bytes.split_first()?;
    let (fingerprint, rest) = rest.split_first_chunk::<32>()?;
    let fingerprint = Fingerprint(*fingerprint);
    match tag {
        IN_FLIGHT => {
            let token = rest.try_into().ok().map(u128::from_be_bytes)?;
            Some(Entry::InFlight { fingerprint, token })
        }
        DONE => {
            let (status, rest) = rest.split_first_chunk::<2>()?;
            let (length, rest) = rest.split_first_chunk::<2>()?;
            let (content_type, body) =
                rest.split_at_checked(usize::from(u16::from_be_bytes(*length)))?;
            let content_type = if content_type.is_empty() {
                None
            } else {
                Some(HeaderValue::from_bytes(content_type).ok()?)
            };
            Some(Entry::Done {
                fingerprint,
                answer: StoredAnswer {
                    status: StatusCode::from_u16(u16::from_be_bytes(*status)).ok()?,
                    content_type,
                    body: Bytes::copy_from_slice(body),
                },
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_their_encoding() {
        let fingerprint = Fingerprint::of(&[b"a checkout"]);
        let entries = [
            Entry::InFlight {
                fingerprint,
                token: u128::MAX - 7,
            },
            Entry::Done {
                fingerprint,
                answer: StoredAnswer {
                    status: StatusCode::OK,
                    content_type: Some(HeaderValue::from_static("application/json; charset=utf-8")),
                    body: Bytes::from_static(b"{\"url\":\"https://proof\"}\n\x00\xff"),
                },
            },
            Entry::Done {
                fingerprint,
                answer: StoredAnswer {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    content_type: None,
                    body: Bytes::new(),
                },
            },
        ];
        for entry in entries {
            assert_eq!(decode(&encode(&entry)), Some(entry));
        }
    }

    #[test]
    fn foreign_values_are_not_entries() {
        for bad in [
            &b""[..],
            b"L",
            b"Lshort",
            b"X0123456789012345678901234567890123456789",
            b"D",
        ] {
            assert_eq!(decode(bad), None);
        }
    }
}
