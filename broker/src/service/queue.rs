//! What a waiting visitor is told: position and a rough estimated wait.

/// Handling time assumed until some chats have closed, ms.
pub const DEFAULT_HANDLE_MS: f64 = 180_000.0;

/// Tracks the average time an agent needs per chat (exponentially weighted).
#[derive(Clone, Debug)]
pub struct HandlingTime {
    avg_ms: f64,
    samples: u64,
}

impl Default for HandlingTime {
    fn default() -> Self {
        HandlingTime { avg_ms: DEFAULT_HANDLE_MS, samples: 0 }
    }
}

impl HandlingTime {
    /// Adds a chat that took `ms` from assignment to close.
    pub fn observe(&mut self, ms: u64) {
        self.samples += 1;
        // the first samples count fully, later ones with weight 1/20
        let weight = (1.0 / self.samples as f64).max(0.05);
        self.avg_ms += weight * (ms as f64 - self.avg_ms);
    }

    /// The current average, ms.
    pub fn avg_ms(&self) -> f64 {
        self.avg_ms
    }
}

/// Estimated wait for position `position` (1 = next) when `agents` agents serve the
/// queue, each freeing a seat every `capacity`-th of a handling time on average.
pub fn estimated_wait_secs(position: usize, agents: usize, capacity_per_agent: u32, handle_ms: f64) -> u32 {
    let servers = (agents.max(1) as f64) * (capacity_per_agent.max(1) as f64);
    let secs = position as f64 * handle_ms / servers / 1000.0;
    secs.ceil().min(u32::MAX as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_grows_with_position_and_shrinks_with_agents() {
        assert_eq!(estimated_wait_secs(1, 1, 1, 60_000.0), 60);
        assert_eq!(estimated_wait_secs(4, 2, 2, 60_000.0), 60);
        assert_eq!(estimated_wait_secs(3, 0, 1, 1_000.0), 3, "no agent online counts as one");
    }

    #[test]
    fn handling_time_follows_observations() {
        let mut h = HandlingTime::default();
        h.observe(10_000);
        assert_eq!(h.avg_ms(), 10_000.0, "the first sample replaces the default");
        h.observe(20_000);
        assert_eq!(h.avg_ms(), 15_000.0);
    }
}
