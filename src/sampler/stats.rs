//! Where a sampler run spends its time.

use std::ops::AddAssign;
use std::time::Duration;

/// Time split of a sampler run. `network`, `operators` and `other` are thread time summed over
/// every worker (so in parallel runs they may add up to more than `wall`); their shares say
/// where the CPU went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// In the network (or the exact prior's solve).
    pub network: Duration,
    /// In the measurement operators (FFTs, coil maps, adjoints).
    pub operators: Duration,
    /// Everything else: mask draws, noise, write-backs, aggregation, DDIM moves.
    pub other: Duration,
    /// Wall-clock time of the call.
    pub wall: Duration,
    /// Number of partial denoisings (network calls).
    pub denoisings: usize,
    /// Number of sampler steps run (over all samples).
    pub steps: usize,
}

impl Stats {
    /// Sum of the three thread-time parts.
    pub fn busy(&self) -> Duration {
        self.network + self.operators + self.other
    }

    /// Shares `(network, operators, other)` of the busy time, each in `[0, 1]`.
    pub fn shares(&self) -> (f64, f64, f64) {
        let b = self.busy().as_secs_f64();
        if b == 0.0 {
            return (0.0, 0.0, 0.0);
        }
        (
            self.network.as_secs_f64() / b,
            self.operators.as_secs_f64() / b,
            self.other.as_secs_f64() / b,
        )
    }
}

impl AddAssign for Stats {
    /// Adds the parts, counts and wall times.
    fn add_assign(&mut self, o: Stats) {
        self.network += o.network;
        self.operators += o.operators;
        self.other += o.other;
        self.wall += o.wall;
        self.denoisings += o.denoisings;
        self.steps += o.steps;
    }
}
