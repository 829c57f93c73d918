//! Live counters, latency histograms that survive a trip through JSON, and the
//! one-line progress display.

use hdrhistogram::Histogram;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters every task of a process adds to; the progress line reads them.
#[derive(Debug, Default)]
pub struct Live {
    /// Connections currently logged in.
    pub connections: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages accepted (durable).
    pub accepted: AtomicU64,
    /// Messages delivered to the other party.
    pub delivered: AtomicU64,
    /// Failures of any kind (connects, refused sends, error frames).
    pub errors: AtomicU64,
    /// Sends the server refused for good (never accepted).
    pub failed: AtomicU64,
}

impl Live {
    /// Fresh zeroed counters.
    pub fn new() -> Arc<Live> {
        Arc::new(Live::default())
    }

    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections: self.connections.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Values of [`Live`] at one moment (also what workers report every second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Connections logged in.
    pub connections: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages accepted.
    pub accepted: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Failures.
    pub errors: u64,
}

impl std::ops::Add for Snapshot {
    type Output = Snapshot;
    fn add(self, o: Snapshot) -> Snapshot {
        Snapshot {
            connections: self.connections + o.connections,
            sent: self.sent + o.sent,
            accepted: self.accepted + o.accepted,
            delivered: self.delivered + o.delivered,
            errors: self.errors + o.errors,
        }
    }
}

/// Highest latency recorded: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// A latency histogram in microseconds (3 significant digits). Serialized as its
/// recorded `(value, count)` pairs so a parent can merge the histograms of its
/// worker processes.
#[derive(Clone, Debug)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // Valid constant bounds: 1 us ..= 1 h, 3 digits.
        Latency(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"))
    }

    /// Records one latency (clamped to 1 us ..= 1 h).
    pub fn record(&mut self, latency: Duration) {
        self.record_micros(latency.as_micros().min(MAX_MICROS as u128) as u64);
    }

    /// Records one latency in microseconds (clamped).
    pub fn record_micros(&mut self, micros: u64) {
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        for v in other.0.iter_recorded() {
            self.0.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// Percentiles in milliseconds.
    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: ms(self.0.value_at_quantile(0.50)),
            p99: ms(self.0.value_at_quantile(0.99)),
            p999: ms(self.0.value_at_quantile(0.999)),
            max: ms(self.0.max()),
            mean: self.0.mean().round() / 1000.0,
            count: self.0.len(),
        }
    }
}

impl Serialize for Latency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u64, u64)> = self.0.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
        pairs.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Latency, D::Error> {
        let pairs = Vec::<(u64, u64)>::deserialize(d)?;
        let mut latency = Latency::new();
        for (value, count) in pairs {
            latency.0.saturating_record_n(value.clamp(1, MAX_MICROS), count);
        }
        Ok(latency)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Number of values.
    pub count: u64,
}

/// The one-line progress display on stderr, redrawn every second (a new line every
/// 5 s when stderr is not a terminal). Stops when dropped.
pub struct Progress {
    task: tokio::task::JoinHandle<()>,
    tty: bool,
}

impl Progress {
    /// Starts showing what `read` returns; `limit` bounds how long it may run.
    pub fn start(read: impl Fn() -> Snapshot + Send + 'static, limit: Duration) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut previous = read();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut ticks = 0u32;
            while start.elapsed() < limit {
                tick.tick().await;
                let now = read();
                let elapsed = start.elapsed().as_secs();
                ticks += 1;
                if tty || ticks == 5 {
                    let line = progress_line(elapsed, ticks, &previous, &now);
                    let mut err = std::io::stderr().lock();
                    let _ = if tty { write!(err, "\r{line}\x1b[K") } else { writeln!(err, "{line}") };
                    let _ = err.flush();
                    previous = now;
                    ticks = 0;
                }
            }
        });
        Progress { task, tty }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.task.abort();
        if self.tty {
            eprintln!();
        }
    }
}

/// `[  12s] conns 1000 | sent/s 100 | accepted/s 99 | delivered/s 98 | errors 0`,
/// rates over the last `window_secs` seconds.
pub fn progress_line(elapsed_secs: u64, window_secs: u32, before: &Snapshot, now: &Snapshot) -> String {
    let rate = |now: u64, before: u64| now.saturating_sub(before) / u64::from(window_secs.max(1));
    format!(
        "[{elapsed_secs:>4}s] conns {} | sent/s {} | accepted/s {} | delivered/s {} | errors {}",
        now.connections,
        rate(now.sent, before.sent),
        rate(now.accepted, before.accepted),
        rate(now.delivered, before.delivered),
        now.errors,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_merge_after_a_json_round_trip() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for us in 1..=1000 {
            a.record_micros(us * 1000); // 1..=1000 ms
        }
        b.record(Duration::from_secs(2));
        let json = serde_json::to_string(&b).unwrap();
        let back: Latency = serde_json::from_str(&json).unwrap();
        a.merge(&back);
        let s = a.summary();
        assert_eq!(s.count, 1001);
        assert!((s.p50 - 500.0).abs() < 2.5, "{s:?}");
        assert!((s.max - 2000.0).abs() < 4.0, "{s:?}");
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn the_progress_line_shows_rates_per_second() {
        let before = Snapshot { connections: 10, sent: 100, accepted: 90, delivered: 80, errors: 0 };
        let now = Snapshot { connections: 10, sent: 200, accepted: 185, delivered: 170, errors: 1 };
        let line = progress_line(3, 1, &before, &now);
        assert!(progress_line(5, 5, &before, &now).contains("sent/s 20"));
        assert!(line.contains("sent/s 100") && line.contains("accepted/s 95") && line.contains("delivered/s 90"), "{line}");
    }
}
