//! A simulated comparator, for tests and benchmarks only: it answers from known latent scores, so
//! a ranking can be scored against the truth. The CLI and the service never offer it.
//!
//! Answers follow a Plackett-Luce model: the utility of the item in slot `s` is
//! `scale * latent + slot_bias[s]`, and each stage picks its best by a Gumbel-max draw. `scale` is
//! calibrated so that a random pair is judged right with a stated probability (0.80 models a good
//! but fallible judge); `slot_bias` is the comparator's preference for some positions.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::compare::{GroupOutcome, Stage};
use crate::schedule::{standard_normal, MAX_GROUP};

/// How much of a ranking each call reveals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Only the best of the group: one stage.
    BestOf,
    /// The whole order of the group: size - 1 stages.
    FullRanking,
}

/// A comparator that knows the truth and answers with calibrated noise.
#[derive(Debug, Clone)]
pub struct Simulator {
    latent: Vec<f64>,
    scale: f64,
    slot_bias: [f64; MAX_GROUP],
    answer: Answer,
    rng: StdRng,
}

impl Simulator {
    /// `pair_accuracy` in (0.5, 1): how often a random pair is ordered right (without slot bias).
    pub fn new(latent: Vec<f64>, pair_accuracy: f64, slot_bias: [f64; MAX_GROUP], answer: Answer, seed: u64) -> Self {
        let scale = calibrate_scale(&latent, pair_accuracy, seed);
        Self {
            latent,
            scale,
            slot_bias,
            answer,
            rng: StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    /// The true log-strengths on the model's scale: what a perfect fit would recover.
    pub fn true_scores(&self) -> Vec<f64> {
        self.latent.iter().map(|l| l * self.scale).collect()
    }

    /// Judge a group of items shown in slot order.
    pub fn judge(&mut self, items: &[u32]) -> GroupOutcome {
        let mut remaining: Vec<u8> = (0..items.len() as u8).collect();
        let num_stages = match self.answer {
            Answer::BestOf => 1,
            Answer::FullRanking => items.len() - 1,
        };
        let mut stages = Vec::with_capacity(num_stages);
        for _ in 0..num_stages {
            let utility =
                |slot: u8| self.scale * self.latent[items[slot as usize] as usize] + self.slot_bias[slot as usize];
            let winner = remaining
                .iter()
                .map(|&slot| (utility(slot) + gumbel(&mut self.rng), slot))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, slot)| slot)
                .expect("a group has items");
            let probs = remaining
                .iter()
                .map(|&slot| if slot == winner { 1.0 } else { 0.0 })
                .collect();
            stages.push(Stage {
                slots: remaining.clone(),
                probs,
            });
            remaining.retain(|&slot| slot != winner);
        }
        GroupOutcome { stages }
    }
}

/// `n` standard-normal latent qualities drawn under `seed` (Box-Muller): most images middling, a
/// few very good or very bad. The benches draw their truth with it.
pub fn normal_latent(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| standard_normal(&mut rng)).collect()
}

fn gumbel(rng: &mut StdRng) -> f64 {
    -(-rng.random::<f64>().max(f64::MIN_POSITIVE).ln()).ln()
}

/// The scale at which a random pair of distinct items is ordered right with probability
/// `accuracy`: the mean of `sigmoid(scale * |l_i - l_j|)` over sampled pairs, solved by bisection.
pub fn calibrate_scale(latent: &[f64], accuracy: f64, seed: u64) -> f64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = latent.len();
    let gaps: Vec<f64> = (0..20_000)
        .filter_map(|_| {
            let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
            (i != j).then(|| (latent[i] - latent[j]).abs())
        })
        .collect();
    let accuracy_at =
        |scale: f64| gaps.iter().map(|g| 1.0 / (1.0 + (-scale * g).exp())).sum::<f64>() / gaps.len() as f64;
    let (mut lo, mut hi) = (0.0, 1.0);
    while accuracy_at(hi) < accuracy && hi < 1e6 {
        hi *= 2.0;
    }
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if accuracy_at(mid) < accuracy {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_pairs_are_judged_right_at_the_stated_rate() {
        let latent: Vec<f64> = (0..500).map(|i| (i as f64 * 0.731).sin() * 3.0).collect();
        let mut sim = Simulator::new(latent.clone(), 0.8, [0.0; MAX_GROUP], Answer::BestOf, 5);
        let mut rng = StdRng::seed_from_u64(9);
        let (mut right, mut total) = (0, 0);
        for _ in 0..20_000 {
            let (i, j) = (rng.random_range(0..500u32), rng.random_range(0..500u32));
            if i == j || latent[i as usize] == latent[j as usize] {
                continue;
            }
            let winner_slot = sim.judge(&[i, j]).stages[0]
                .probs
                .iter()
                .position(|&p| p == 1.0)
                .unwrap();
            let winner = [i, j][winner_slot];
            let best = if latent[i as usize] > latent[j as usize] { i } else { j };
            right += usize::from(winner == best);
            total += 1;
        }
        let accuracy = right as f64 / total as f64;
        assert!((accuracy - 0.8).abs() < 0.015, "{accuracy}");
    }

    #[test]
    fn full_rankings_have_one_stage_fewer_than_the_group() {
        let mut sim = Simulator::new(
            vec![0.0, 1.0, 2.0, 3.0],
            0.8,
            [0.3, 0.0, 0.0, 0.0],
            Answer::FullRanking,
            1,
        );
        let outcome = sim.judge(&[3, 1, 0, 2]);
        assert_eq!(outcome.stages.len(), 3);
        assert_eq!(
            outcome.stages.iter().map(|s| s.slots.len()).collect::<Vec<_>>(),
            [4, 3, 2]
        );
    }
}
