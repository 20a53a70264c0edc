//! Turning per-image scores into the stage-wise choice distributions a comparator returns.
//!
//! A scoring metric has no opinion beyond its scores, so the answer is the Plackett-Luce model
//! they imply: at each stage, P(slot i is best of those left) = softmax(score_i / T). The stage's
//! winner is the highest score (the lowest slot on a tie); it is removed and the next stage is
//! over the rest, down to the last pair. T, the temperature, says how large a score gap makes a
//! confident answer: a gap of T gives odds of e : 1.

use crate::compare::{GroupOutcome, Stage};

/// Stage-wise Plackett-Luce probabilities for `scores` (higher is better) in slot order.
pub(crate) fn plackett_luce_stages(scores: &[f64], temperature: f64) -> GroupOutcome {
    let mut remaining: Vec<u8> = (0..scores.len() as u8).collect();
    let mut stages = Vec::with_capacity(scores.len().saturating_sub(1));
    while remaining.len() >= 2 {
        let top = remaining
            .iter()
            .map(|&s| scores[s as usize])
            .fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = remaining
            .iter()
            .map(|&s| ((scores[s as usize] - top) / temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let probs = weights.iter().map(|w| w / total).collect();
        // `position` finds the first slot with the top score, so ties go to the lowest slot.
        let winner = remaining
            .iter()
            .position(|&s| scores[s as usize] == top)
            .expect("the maximum is one of the remaining scores");
        stages.push(Stage {
            slots: remaining.clone(),
            probs,
        });
        remaining.remove(winner);
    }
    GroupOutcome { stages }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_remove_the_winner_and_sum_to_one() {
        let out = plackett_luce_stages(&[1.0, 3.0, 2.0, 0.0], 1.0);
        let slots: Vec<_> = out.stages.iter().map(|s| s.slots.clone()).collect();
        assert_eq!(slots, vec![vec![0, 1, 2, 3], vec![0, 2, 3], vec![0, 3]]);
        for s in &out.stages {
            assert!((s.probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        // Last stage: slots 0 and 3, gap 1 at T = 1: odds e : 1.
        let last = &out.stages[2].probs;
        assert!((last[0] / last[1] - std::f64::consts::E).abs() < 1e-12);
    }

    #[test]
    fn temperature_scales_confidence() {
        let sharp = plackett_luce_stages(&[0.0, 1.0], 0.1);
        let soft = plackett_luce_stages(&[0.0, 1.0], 10.0);
        assert!(sharp.stages[0].probs[1] > 0.99);
        assert!(soft.stages[0].probs[1] < 0.53);
    }

    #[test]
    fn ties_go_to_the_lowest_slot() {
        let out = plackett_luce_stages(&[2.0, 2.0, 1.0], 1.0);
        assert_eq!(out.stages[1].slots, vec![1, 2]);
        assert_eq!(out.stages[0].probs[0], out.stages[0].probs[1]);
    }
}
