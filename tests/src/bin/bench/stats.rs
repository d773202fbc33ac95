//! Repeated measurements: min / median / max, and ratios of interleaved pairs.

use serde_json::{Value, json};

/// The values of one measurement over repeated runs.
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<f64>);

impl Samples {
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// `other[i] / self[i]` for each run: how many times `self` beats `other` in each pair.
    pub fn ratios_from(&self, other: &Samples) -> Samples {
        Samples(
            self.0
                .iter()
                .zip(&other.0)
                .map(|(ours, theirs)| theirs / ours)
                .collect(),
        )
    }

    pub fn json(&self) -> Value {
        json!({"min": self.min(), "median": self.median(), "max": self.max(), "runs": self.0})
    }

    /// `min / median / max` with `digits` decimals.
    pub fn text(&self, digits: usize) -> String {
        format!(
            "{:.d$} / {:.d$} / {:.d$}",
            self.min(),
            self.median(),
            self.max(),
            d = digits
        )
    }
}
