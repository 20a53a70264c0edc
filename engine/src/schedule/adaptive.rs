//! Adaptive rounds: after the first random round, group items whose current scores are close and
//! uncertain, so that each answer separates items the ranking cannot yet tell apart.
//!
//! Each round draws a plausible score for every active item from its posterior,
//! `N(score, own_std_error^2)` ([`crate::rank::Fit::own_std_errors`]), sorts by the draws and
//! cuts the order into consecutive groups (a Swiss-style pairing with Thompson sampling). Items
//! with a large standard error move around from round to round and meet many neighbours; items
//! already pinned down meet the ones next to them. Because the draws change every round, groups
//! overlap across rounds and the comparison graph stays connected.

use rand::Rng;

use super::{Group, Planner};

impl Planner {
    /// One adaptive round over the `active` items, given the current fit.
    pub fn adaptive_round(&mut self, scores: &[f64], std_errors: &[f64], active: &[u32]) -> Vec<Group> {
        let mut keyed: Vec<(f64, u32)> = active
            .iter()
            .map(|&item| {
                let i = item as usize;
                let spread = if std_errors[i].is_finite() { std_errors[i] } else { 10.0 };
                (scores[i] + spread * standard_normal(&mut self.rng), item)
            })
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // A random offset, so group boundaries do not always fall at the same ranks.
        let offset = self.rng.random_range(0..keyed.len().clamp(1, super::MAX_GROUP));
        keyed.rotate_left(offset);
        let order: Vec<u32> = keyed.into_iter().map(|(_, item)| item).collect();
        self.slots.groups_in_order(&order)
    }
}

/// A standard normal draw (Box-Muller). The simulator draws its latent truth with it too.
pub(crate) fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
