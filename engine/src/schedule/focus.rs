//! What the user needs from the ranking, and where the effort should go for it.
//!
//! - [`Mode::Full`]: the whole order matters. Each round takes the two thirds of the items whose
//!   next comparison improves the order most (see [`Mode::active_items`]).
//! - [`Mode::TopK`]: only membership in the best k matters (a platform picking the best
//!   uploads). Items far above or below the cut are settled; effort goes to those near it.
//! - [`Mode::Threshold`]: a curator drops the worst fraction. Effort goes to items near the cut.
//!
//! The plan reads the probability of being on the wanted side of the cut as
//! `Phi((score - cut) / std_error)`, with the cut halfway between the two items that straddle it
//! ([`Mode::probabilities`]). The cut's own uncertainty is ignored there: it is cheap enough for
//! every round, and drawing the cut instead did not plan better (see `membership.rs`). The
//! probabilities a job reports draw it ([`Mode::reported_probabilities`]).
//!
//! Which standard error: the probabilities a job reports use the error relative to the mean
//! score ([`Fit::relative_std_errors`]), since the level of all scores moves the cut with them.
//! The plan uses each item's own error ([`Fit::own_std_errors`], as if every other score were
//! known): that is what one more look at the item shrinks, and it is computed alike at every N,
//! whereas the relative error is exact only up to [`crate::rank::EXACT_MAX_ITEMS`] items. With the
//! relative error the plan changed character there: below it, errors that include the
//! neighbours' uncertainty kept more items in play. Measured on the ranking bench (top-10%
//! precision at 2 calls per image, N = 200): absolute errors 0.859 (40 seeds), relative 0.879;
//! relative 0.8883 against own 0.8929 over 1,400 seeds (0.8852 / 0.8938 on seeds 1-400, 0.8896 /
//! 0.8926 on 401-1,400). Worst-10% precision in threshold mode, 0.8848 / 0.8849 (seeds
//! 401-1,400), and Spearman in full mode at 2.5 calls, 0.9507 / 0.9512 (400 seeds), did not move.
//! Above 500 items the two are the same number.

use super::MAX_GROUP;
use crate::rank::Fit;

/// Which ranking the user wants.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    Full,
    /// The best `k` items.
    TopK {
        k: usize,
    },
    /// The worst `fraction` (0..1) of the items, to be dropped.
    Threshold {
        fraction: f64,
    },
}

/// In top-k mode, an item stays in play while its chance of being on the wrong side of the cut
/// is at least `SETTLED * sqrt(n)`, where `n` is how many groups it has been in.
///
/// Why the `sqrt(n)`: one more look at an item seen `n` times moves its score by about
/// `1 / sqrt(n)` of its standard error, so at a given doubt the look is worth less the more the
/// item has been seen. A flat threshold spent the budget on a few items straddling the cut (80
/// and more appearances each at N = 2,000, against 8 on average) while items that came last in
/// their one or two groups were settled low, and those made most of the misses. Measured on the
/// ranking bench (top-10% precision at 2 calls per image, N = 200 over 200 seeds / N = 2,000
/// over 40 / N = 20,000 over 2): the flat threshold 0.05 gave 0.883 / 0.897 / 0.897; this
/// rule with 0.02 gives 0.885 / 0.908 / 0.904. At N = 2,000, a first version that used the
/// rule only to size the round gave 0.898 / 0.907 / 0.901 at 0.015 / 0.02 / 0.025; a power of
/// 1 rather than 1/2 settles too soon (1.46 of the 2 calls spent, 0.883). The N = 200 figures
/// above and on the next constant predate planning with each item's own error (module doc);
/// with it, N = 200 over seeds 1-400 gives 0.8849 / 0.8938 / 0.8922 at 0.015 / 0.02 / 0.025.
const SETTLED: f64 = 0.02;

/// Threshold mode's [`SETTLED`]: lower, because there the chance of being on the wrong side is
/// not pessimistic, as it is in top-k mode. At N = 2,000 (8 seeds), the items whose chance fell
/// below 0.02 had chances summing to 138 in top-k mode, of which 87 in fact were in the top k,
/// and to 136 in threshold mode, of which 121 in fact were below the cut. A likely reason, not
/// verified: Plackett-Luce answers are not symmetric between the two ends, since each stage
/// picks the best of the rest. Worst-10% precision at 2 calls per image, N = 2,000 over 40
/// seeds: 0.8905 / 0.8923 / 0.9004 / 0.8991 / 0.8916 at 0.02 / 0.0175 / 0.015 / 0.0125 / 0.01;
/// N = 200 over 200 seeds: 0.8847 at 0.02, 0.8810 at 0.015; N = 20,000 over 3: 0.889 at 0.02,
/// 0.897 at 0.015. With more items kept in play the rounds are larger, too: at N = 20,000, 111
/// rounds instead of 1,130. In top-k mode 0.015 changes nothing at N = 2,000 (0.9075 against
/// 0.9076) and loses at N = 200 (0.8803 against 0.8853).
const SETTLED_THRESHOLD: f64 = 0.015;

impl Mode {
    /// For each item, P(in the top k) or P(below the threshold); `None` in full mode.
    pub fn probabilities(&self, scores: &[f64], std_errors: &[f64]) -> Option<Vec<f64>> {
        let n = scores.len();
        let (members, above) = self.wanted_set(n)?;
        // The cut lies below the best `cut_rank` items.
        let cut_rank = if above { members } else { n - members };
        let mut sorted = scores.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let cut = match cut_rank {
            0 => f64::INFINITY,
            r if r >= n => f64::NEG_INFINITY,
            r => (sorted[r - 1] + sorted[r]) / 2.0,
        };
        let probs = scores
            .iter()
            .zip(std_errors)
            .map(|(&s, &se)| {
                let p_above = normal_cdf((s - cut) / se.max(1e-12));
                if above {
                    p_above
                } else {
                    1.0 - p_above
                }
            })
            .collect();
        Some(probs)
    }

    /// The probabilities a job reports: like [`Mode::probabilities`], but with the cut's own
    /// uncertainty drawn in (see `membership.rs`). Deterministic for a given `seed`.
    pub fn reported_probabilities(&self, scores: &[f64], std_errors: &[f64], seed: u64) -> Option<Vec<f64>> {
        let (members, best) = self.wanted_set(scores.len())?;
        Some(super::membership::membership_probabilities(
            scores, std_errors, members, best, seed,
        ))
    }

    /// The mode to plan and to judge stability by, over `n` items. A cut that decides nothing (k
    /// at least N, or a fraction that drops no image) leaves every image on its side already: a
    /// plan for it would settle every image after the random round and leave the groups
    /// unconnected, so the budget goes to ordering them all, as in full mode. Reports keep the
    /// asked-for mode (every chance is then 1 or 0).
    pub fn for_planning(&self, n: usize) -> Mode {
        match self.wanted_set(n) {
            Some((members, _)) if members == 0 || members >= n => Mode::Full,
            _ => *self,
        }
    }

    /// The set whose membership the cut probabilities give, out of `n` items: its size, and
    /// whether it holds the best items (top k) or the worst (the fraction to drop). `None` in
    /// full mode, which has no cut.
    fn wanted_set(&self, n: usize) -> Option<(usize, bool)> {
        match *self {
            Mode::Full => None,
            Mode::TopK { k } => Some((k.min(n), true)),
            Mode::Threshold { fraction } => Some((num_dropped(fraction, n), false)),
        }
    }

    /// The items worth comparing in the next round, given the fit and how many groups each item
    /// has been shown in. In full mode, the items with the most to gain (`full_round_items`);
    /// otherwise those whose next look is worth most (see `SETTLED`), widened to at least two
    /// groups so that they have neighbours to be compared with.
    pub fn active_items(&self, fit: &Fit, appearances: &[u32]) -> Vec<u32> {
        let scores = &fit.scores;
        let settled = match self {
            Mode::Full => return full_round_items(scores, &fit.own_std_errors, appearances),
            Mode::TopK { .. } => SETTLED,
            Mode::Threshold { .. } => SETTLED_THRESHOLD,
        };
        let probs = self
            .probabilities(scores, &fit.own_std_errors)
            .expect("the cut modes have cut probabilities");
        // How much one more look at each item is worth: its chance of being on the wrong side,
        // discounted by how often it has been seen.
        let worth: Vec<f64> = probs
            .iter()
            .zip(appearances)
            .map(|(&p, &seen)| p.min(1.0 - p) / f64::from(seen.max(1)).sqrt())
            .collect();
        let worth_a_look = worth.iter().filter(|&&w| w >= settled).count();
        if worth_a_look == 0 {
            return Vec::new();
        }
        // The items most worth a look, in whole groups of 4 and at least two of them.
        let mut by_worth: Vec<u32> = (0..scores.len() as u32).collect();
        by_worth.sort_by(|&a, &b| worth[b as usize].total_cmp(&worth[a as usize]).then(a.cmp(&b)));
        by_worth.truncate(whole_groups(worth_a_look, scores.len()));
        by_worth.sort_unstable();
        by_worth
    }
}

/// How many of `n` items threshold mode's `fraction` drops: the nearest whole number.
pub fn num_dropped(fraction: f64, n: usize) -> usize {
    ((fraction.clamp(0.0, 1.0) * n as f64).round() as usize).min(n)
}

/// The share of items a full-mode round compares. Measured on the ranking bench (N = 200 and
/// 2,000, full rankings at 2.5 calls per image): every item in every round gives Spearman 0.941
/// and 0.943; three quarters, two thirds and three fifths all give 0.949 to 0.953.
const FULL_ROUND_SHARE: f64 = 2.0 / 3.0;

/// The full-mode round: the items whose next comparison cuts the expected rank error most.
///
/// An item's rank is off by about the number of items within its score's uncertainty, `w_i`
/// (items whose score lies within one standard error of its own), so its squared rank error is
/// about `w_i^2`. One more comparison shrinks its variance by about `1 / (n_i + 1)` of itself,
/// where `n_i` is how many groups it has been in, so the gain is `w_i^2 / (n_i + 1)`. Greedily
/// that spends comparisons where the scores are dense (most images are middling) and fewer on
/// the clear extremes, whose rank a few comparisons already fix. Spearman weighs every rank
/// error alike, so that is where it pays.
fn full_round_items(scores: &[f64], std_errors: &[f64], appearances: &[u32]) -> Vec<u32> {
    let n = scores.len();
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let gain: Vec<f64> = (0..n)
        .map(|i| {
            let (score, spread) = (scores[i], std_errors[i].min(f64::MAX));
            let below = sorted.partition_point(|&x| x < score - spread);
            let within = sorted.partition_point(|&x| x <= score + spread) - below;
            (within * within) as f64 / (f64::from(appearances[i]) + 1.0)
        })
        .collect();
    let mut items: Vec<u32> = (0..n as u32).collect();
    items.sort_by(|&a, &b| gain[b as usize].total_cmp(&gain[a as usize]).then(a.cmp(&b)));
    items.truncate(whole_groups((n as f64 * FULL_ROUND_SHARE).ceil() as usize, n));
    items.sort_unstable();
    items
}

/// `wanted` rounded up to whole groups of [`MAX_GROUP`], and at least two groups, but at most
/// `n`. Ten items would otherwise be cut into groups of 4, 3 and 3, and a group of 3 buys one
/// stage less than a group of 4 for the same call.
fn whole_groups(wanted: usize, n: usize) -> usize {
    (wanted.max(2 * MAX_GROUP).div_ceil(MAX_GROUP) * MAX_GROUP).min(n)
}

/// The standard normal CDF, via the complementary error function (Numerical Recipes' erfc
/// Chebyshev fit, relative error below 1.2e-7).
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fit with these scores and standard errors (absolute, relative and own alike).
    fn fit_of(scores: &[f64], std_errors: &[f64]) -> Fit {
        Fit {
            scores: scores.to_vec(),
            std_errors: std_errors.to_vec(),
            relative_std_errors: std_errors.to_vec(),
            own_std_errors: std_errors.to_vec(),
            connected: vec![true; scores.len()],
            slot_bias: Vec::new(),
            iterations: 0,
            converged: true,
            log_likelihood: 0.0,
        }
    }

    #[test]
    fn plans_read_each_items_own_error() {
        // Absolute and relative errors so wide that every item would stay in play; own errors
        // that settle the far items.
        let scores: Vec<f64> = (0..20).map(|i| -(i as f64)).collect();
        let fit = Fit {
            std_errors: vec![100.0; 20],
            relative_std_errors: vec![100.0; 20],
            ..fit_of(&scores, &[0.5; 20])
        };
        let active = Mode::TopK { k: 5 }.active_items(&fit, &[4; 20]);
        assert!(active.contains(&4) && active.contains(&5));
        assert!(!active.contains(&0) && !active.contains(&19), "{active:?}");
        // Full mode likewise. Items 10..20 crowd within 0.1 of each other, items 0..10 lie 10
        // apart: by their own errors the crowd is where ranks are uncertain, so all of it is in
        // the round; by the wide errors every item looked alike and ties went to the low indices.
        let scores: Vec<f64> = (0..20)
            .map(|i| {
                if i < 10 {
                    10.0 * (i as f64 + 1.0)
                } else {
                    0.01 * i as f64
                }
            })
            .collect();
        let fit = Fit {
            std_errors: vec![100.0; 20],
            relative_std_errors: vec![100.0; 20],
            ..fit_of(&scores, &[0.5; 20])
        };
        let active = Mode::Full.active_items(&fit, &[4; 20]);
        assert!((10..20).all(|i| active.contains(&i)), "{active:?}");
    }

    #[test]
    fn looks_go_to_little_seen_doubtful_items_before_well_seen_ones() {
        // Scores 0.05 apart around the cut between items 4 and 5, so that some twenty items are
        // in doubt; item 39, far below, is in some doubt too because it was seen once.
        let scores: Vec<f64> = (0..40).map(|i| -0.05 * i as f64).collect();
        let mut se = vec![0.5; 40];
        se[39] = 1.0;
        let fit = fit_of(&scores, &se);
        let mode = Mode::TopK { k: 5 };
        let fresh = mode.active_items(&fit, &[1; 40]);
        assert!(fresh.len() >= 20 && (0..10).all(|i| fresh.contains(&i)), "{fresh:?}");
        // Once the items at the cut have been seen a thousand times, one more look moves them
        // by a thirtieth of their error: item 39 is the one worth a look, with one group of
        // neighbours beside it.
        let mut seen = vec![1000; 40];
        seen[39] = 1;
        let active = mode.active_items(&fit, &seen);
        assert_eq!(active.len(), 8, "{active:?}");
        assert!(active.contains(&39));
        // And once it too has been seen often, nothing is worth a look: the job has settled.
        assert!(mode.active_items(&fit, &[1000; 40]).is_empty());
    }

    #[test]
    fn threshold_mode_keeps_looking_at_doubts_that_top_k_mode_settles() {
        // Item 39, seen once, is on the wrong side of the cut with a chance of 0.0175 (z =
        // -2.108), between the two modes' thresholds; every other item has been seen so often
        // that no look at it is worth it. Threshold mode sees the mirror image.
        let mut scores: Vec<f64> = (0..40).map(|i| -0.05 * i as f64).collect();
        let cut = (scores[4] + scores[5]) / 2.0;
        scores[39] = cut - 2.108;
        let mut se = vec![0.5; 40];
        se[39] = 1.0;
        let mut seen = vec![10_000; 40];
        seen[39] = 1;
        let top_k = Mode::TopK { k: 5 }.active_items(&fit_of(&scores, &se), &seen);
        assert!(top_k.is_empty(), "{top_k:?}");
        let mirrored: Vec<f64> = scores.iter().map(|s| -s).collect();
        let threshold = Mode::Threshold { fraction: 0.125 }.active_items(&fit_of(&mirrored, &se), &seen);
        assert_eq!(threshold.len(), 8, "{threshold:?}");
        assert!(threshold.contains(&39));
    }

    #[test]
    fn rounds_come_in_whole_groups() {
        assert_eq!(whole_groups(10, 200), 12);
        assert_eq!(whole_groups(1, 200), 8, "at least two groups");
        assert_eq!(whole_groups(12, 200), 12);
        assert_eq!(whole_groups(10, 11), 11, "never more than there are");
    }

    #[test]
    fn normal_cdf_matches_known_values() {
        for (x, want) in [(0.0, 0.5), (1.0, 0.841344746), (-1.96, 0.024997895), (3.0, 0.998650102)] {
            assert!((normal_cdf(x) - want).abs() < 1e-6, "{x}: {}", normal_cdf(x));
        }
    }

    #[test]
    fn top_k_probabilities_follow_the_scores_and_settle_far_items() {
        let scores: Vec<f64> = (0..20).map(|i| -(i as f64)).collect();
        let se = vec![0.5; 20];
        let p = Mode::TopK { k: 5 }.probabilities(&scores, &se).unwrap();
        assert!(p[0] > 0.999 && p[19] < 0.001);
        assert!(p.windows(2).all(|w| w[0] >= w[1]));
        assert!((p[4] - (1.0 - p[5])).abs() < 1e-9, "symmetric about the cut");
        let active = Mode::TopK { k: 5 }.active_items(&fit_of(&scores, &se), &[4; 20]);
        assert!(active.contains(&4) && active.contains(&5) && !active.contains(&0) && !active.contains(&19));
    }

    #[test]
    fn threshold_probabilities_mark_the_worst_fraction() {
        let scores: Vec<f64> = (0..10).map(|i| i as f64).collect();
        let p = Mode::Threshold { fraction: 0.3 }
            .probabilities(&scores, &[0.1; 10])
            .unwrap();
        assert!(p[0] > 0.99 && p[2] > 0.99 && p[3] < 0.01 && p[9] < 0.01, "{p:?}");
    }

    #[test]
    fn full_rounds_favour_crowded_and_little_seen_items() {
        // Items 0..30 crowd around 0; items 30..40 are spread far apart, so their ranks are clear.
        let scores: Vec<f64> = (0..40)
            .map(|i| {
                if i < 30 {
                    i as f64 * 0.01
                } else {
                    (i as f64 - 29.0) * 10.0
                }
            })
            .collect();
        let se = vec![0.5; 40];
        let mut seen = vec![8; 40];
        seen[0] = 1; // a crowded item seen once gains the most
        let active = Mode::Full.active_items(&fit_of(&scores, &se), &seen);
        assert_eq!(active.len(), 28, "two thirds of 40, in whole groups of 4");
        assert!(active.contains(&0));
        assert!(active.iter().all(|&i| i < 30), "the clear extremes wait: {active:?}");
        assert!(active.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        // Once the crowd has been seen far more often, the extremes get their turn.
        let seen: Vec<u32> = (0..40).map(|i| if i < 30 { 10_000 } else { 1 }).collect();
        let active = Mode::Full.active_items(&fit_of(&scores, &se), &seen);
        assert!((30..40).all(|i| active.contains(&i)));
    }
}
