//! Bounds on what one client connection can hold.

use std::time::Duration;

/// Longest time an early answer waits for the client to stop sending the body it announced.
const MAX_LINGER: Duration = Duration::from_secs(1);

/// How long the server keeps reading (and discarding) a request body after answering early,
/// before it closes the connection: long enough that the client sees the answer rather than a
/// reset, never longer than the request itself was allowed.
pub fn linger(client_request_timeout: Duration) -> Duration {
    client_request_timeout.min(MAX_LINGER)
}

/// Actix's limit is per worker: the instance's limit is split evenly, rounded up so that a
/// worker always accepts at least one connection.
pub fn max_connections_per_worker(max_connections: usize, workers: usize) -> usize {
    max_connections.div_ceil(workers.max(1)).max(1)
}
