//! The scenarios, and what they share: a bounded connection phase, timestamped
//! bodies, and the barrier a worker waits at before its idle phase.

pub mod chat;
pub mod connect;
pub mod idle;
pub mod party;

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_client::ClientError;
use tokio::io::{AsyncBufReadExt, BufReader, Lines, Stdin};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Digits of the send timestamp at the start of every body.
pub const STAMP_LEN: usize = 20;

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A body of `size` bytes starting with the send time (20 digits of Unix nanos).
pub fn stamped_body(size: usize) -> String {
    let mut body = format!("{:020}", now_nanos());
    if size > body.len() {
        body.push(' ');
        body.extend(std::iter::repeat_n('x', size - body.len()));
    }
    body
}

/// The send time a [`stamped_body`] carries.
pub fn body_stamp(body: &str) -> Option<u64> {
    body.get(..STAMP_LEN)?.parse().ok()
}

/// What the connection phase produced.
pub struct Connected<T> {
    /// Successful connections, by index.
    pub ok: Vec<(u64, T)>,
    /// Failures, as one-line messages.
    pub errors: Vec<String>,
    /// How long the phase took.
    pub elapsed: Duration,
}

/// Runs `make(i)` for `i` in `0..count` with at most `concurrency` in flight, for
/// at most `limit`; whatever has not finished by then counts as an error.
pub async fn connect_many<T, F, Fut>(count: u64, concurrency: u32, limit: Duration, make: F) -> Connected<T>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + limit;
    let mut set = JoinSet::new();
    let mut next = 0u64;
    let mut ok = Vec::with_capacity(count.min(1 << 20) as usize);
    let mut errors = Vec::new();
    loop {
        while set.len() < concurrency.max(1) as usize && next < count {
            let i = next;
            let fut = make(i);
            set.spawn(async move { (i, fut.await) });
            next += 1;
        }
        if set.is_empty() {
            break;
        }
        match tokio::time::timeout_at(deadline, set.join_next()).await {
            Ok(Some(Ok((i, Ok(value))))) => ok.push((i, value)),
            Ok(Some(Ok((_, Err(e))))) => errors.push(e.to_string()),
            Ok(Some(Err(join))) => errors.push(format!("connect task failed: {join}")),
            Ok(None) => break,
            Err(_) => {
                let unfinished = set.len() as u64 + (count - next);
                set.abort_all();
                for _ in 0..unfinished {
                    errors.push(format!("connection phase limit of {limit:?} reached"));
                }
                break;
            }
        }
    }
    Connected { ok, errors, elapsed: start.elapsed() }
}

/// Where a job reports "all connected" and waits for the go-ahead.
pub enum Barrier {
    /// A single process: report through the channel (the caller samples memory)
    /// and go on at once.
    Local(Option<tokio::sync::oneshot::Sender<()>>),
    /// A worker: print a line for the parent and wait for `go` on stdin.
    Worker(Lines<BufReader<Stdin>>),
}

impl Barrier {
    /// A worker barrier on this process's stdin.
    pub fn worker_stdin(lines: Lines<BufReader<Stdin>>) -> Barrier {
        Barrier::Worker(lines)
    }

    /// Reports that every connection is up, then waits (at most `limit`) to be
    /// allowed on.
    pub async fn connected(&mut self, limit: Duration) {
        match self {
            Barrier::Local(tx) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
            Barrier::Worker(lines) => {
                crate::worker::emit(&crate::worker::Line::Connected);
                let wait = async {
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line.trim() == "go" {
                            return;
                        }
                    }
                };
                let _ = tokio::time::timeout(limit, wait).await;
            }
        }
    }
}

/// Reads the job line a parent writes to a worker's stdin.
pub fn stdin_lines() -> Lines<BufReader<Stdin>> {
    BufReader::new(tokio::io::stdin()).lines()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_send_time_and_size() {
        let before = now_nanos();
        let body = stamped_body(64);
        assert_eq!(body.len(), 64);
        let stamp = body_stamp(&body).unwrap();
        assert!(stamp >= before && stamp <= now_nanos());
        assert_eq!(stamped_body(20).len(), 20);
        assert_eq!(body_stamp("hello"), None);
    }

    #[tokio::test]
    async fn the_connection_phase_is_bounded_in_flight_and_in_time() {
        let in_flight = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (f, p) = (in_flight.clone(), peak.clone());
        let done = connect_many(20, 4, Duration::from_secs(10), move |i| {
            let (f, p) = (f.clone(), p.clone());
            async move {
                let now = f.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                p.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                f.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                if i == 3 {
                    Err(ClientError::Closed)
                } else {
                    Ok(i)
                }
            }
        })
        .await;
        assert_eq!((done.ok.len(), done.errors.len()), (19, 1));
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 4);
        let stuck = connect_many(3, 8, Duration::from_millis(50), |_| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        })
        .await;
        assert_eq!((stuck.ok.len(), stuck.errors.len()), (0, 3));
    }
}
