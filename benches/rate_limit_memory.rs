//! Memory of the rate limiter with 1,000,000 distinct users, before and after the periodic cleanup.
//!
//! Run with `cargo bench --bench rate_limit_memory`. It counts live heap bytes with a counting
//! allocator (exact, unaffected by allocator caching) and also prints the resident set size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::clock::FakeRelativeClock;
use proof_bff::rate_limit::RateLimitConfig;
use proof_bff::rate_limit::RateLimiter;

struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const KEYS: usize = 1_000_000;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn report(label: &str, limiter: &RateLimiter<FakeRelativeClock>) {
    let (users, addresses) = limiter.len();
    println!(
        "{label:<28} heap {:>8.2} MiB   rss {:>8.2} MiB   keys: {users} users, {addresses} addresses",
        mib(LIVE_BYTES.load(Ordering::Relaxed)),
        rss_bytes().map(mib).unwrap_or(f64::NAN),
    );
}

fn main() {
    let config = RateLimitConfig {
        per_user_burst: 5,
        per_user_per_minute: 10,
        per_ip_burst: 20,
        per_ip_per_minute: 60,
        status_per_user_per_minute: 60,
    };
    let clock = FakeRelativeClock::default();
    let limiter = RateLimiter::with_clock(&config, clock.clone());
    let idle = LIVE_BYTES.load(Ordering::Relaxed);
    report("idle", &limiter);

    let mut user_id = String::with_capacity(32);
    let started = Instant::now();
    for i in 0..KEYS {
        user_id.clear();
        use std::fmt::Write;
        let _ = write!(user_id, "user-{i:08}");
        let _ = limiter.check_user(&user_id);
    }
    let elapsed = started.elapsed();
    let live = LIVE_BYTES.load(Ordering::Relaxed);
    report("1,000,000 live keys", &limiter);
    println!(
        "{:<28} {:.0} bytes per key, {:.0} ns per check",
        "",
        (live - idle) as f64 / KEYS as f64,
        elapsed.as_nanos() as f64 / KEYS as f64
    );

    // Still inside their window: the cleanup must keep them.
    limiter.retain_recent();
    report("cleanup inside the window", &limiter);

    // At 10 per minute one cell is 6 s; a key that made one request is dropped once its state is
    // a whole cell older than fresh: 12 s after the request.
    clock.advance(Duration::from_secs(13));
    let started = Instant::now();
    limiter.retain_recent();
    let cleanup = started.elapsed();
    report("cleanup after the window", &limiter);
    println!(
        "{:<28} cleanup took {:.1} ms",
        "",
        cleanup.as_secs_f64() * 1000.0
    );
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    assert!(limiter.is_empty(), "every key was back to fresh");
    assert!(
        after < idle + 1024 * 1024,
        "memory back near idle: {after} bytes vs {idle} idle"
    );
}
