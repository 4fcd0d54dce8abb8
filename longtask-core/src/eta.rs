//! Estimating the time left from progress samples.
//!
//! [`EtaEstimator`] turns `(step, time)` samples into a rate of steps per second, smoothed so that
//! a slow start or a sudden burst does not swing the estimate: the rate is measured over a window
//! of recent samples (at least a few seconds, or the last 32 samples), then blended into an
//! exponential moving average. There is no rate until two samples with progress between them
//! exist. Workers run one per task and store the rate with each progress report; the time left is
//! then `(total - step) / rate` ([`Progress::eta`](crate::Progress::eta)).
//!
//! ```
//! use chrono::{DateTime, Duration};
//! use longtask_core::EtaEstimator;
//!
//! let t0 = DateTime::UNIX_EPOCH;
//! let mut eta = EtaEstimator::new();
//! eta.observe(0, t0);
//! assert_eq!(eta.rate(), None);
//! for s in 1..=10 {
//!     eta.observe(s * 2, t0 + Duration::seconds(s as i64)); // 2 steps a second
//! }
//! let rate = eta.rate().unwrap();
//! assert!((rate - 2.0).abs() < 0.01, "{rate}");
//! ```

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

const WINDOW_SAMPLES: usize = 32;
const WINDOW_MILLIS: i64 = 5_000;
/// Weight of the newest window rate in the moving average.
const ALPHA: f64 = 0.3;

/// A smoothed steps-per-second estimate from progress samples.
#[derive(Debug, Clone, Default)]
pub struct EtaEstimator {
    samples: VecDeque<(u64, i64)>,
    smoothed: Option<f64>,
}

impl EtaEstimator {
    /// An estimator with no samples.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample: `step` reached at `at`. A step lower than the last one (the job started
    /// over) resets the estimate.
    pub fn observe(&mut self, step: u64, at: DateTime<Utc>) {
        let millis = at.timestamp_millis();
        if let Some(&(last_step, last_millis)) = self.samples.back() {
            if step < last_step || millis < last_millis {
                self.samples.clear();
                self.smoothed = None;
            } else if step == last_step {
                return;
            }
        }
        self.samples.push_back((step, millis));
        // Keep a window of recent samples, but never fewer than needed to span WINDOW_MILLIS.
        while self.samples.len() > WINDOW_SAMPLES
            || (self.samples.len() > 2 && millis - self.samples[1].1 >= WINDOW_MILLIS)
        {
            self.samples.pop_front();
        }
        if let (Some(&(first_step, first_millis)), true) =
            (self.samples.front(), self.samples.len() >= 2)
        {
            let span = millis - first_millis;
            if span > 0 {
                #[allow(clippy::cast_precision_loss)]
                let window_rate = (step - first_step) as f64 * 1000.0 / span as f64;
                self.smoothed = Some(match self.smoothed {
                    Some(prev) => ALPHA.mul_add(window_rate, (1.0 - ALPHA) * prev),
                    None => window_rate,
                });
            }
        }
    }

    /// The smoothed rate in steps per second, once it can be estimated.
    pub fn rate(&self) -> Option<f64> {
        self.smoothed.filter(|r| r.is_finite() && *r > 0.0)
    }
}
