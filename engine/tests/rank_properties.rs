//! Invariants of the ranking core, checked on random data with proptest.

use engine::compare::{GroupOutcome, Stage};
use engine::rank::{fit, log_likelihood_of, FitOptions, Observations, Prior, DEFAULT_PRIOR_PRECISION};
use engine::schedule::Planner;
use proptest::prelude::*;

/// Random hard pairwise outcomes over `n` items, as (winner, loser) pairs.
fn pairs(n: u32, len: usize) -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec((0..n, 0..n), len).prop_map(|v| v.into_iter().filter(|(a, b)| a != b).collect())
}

fn observations(n: usize, pairs: &[(u32, u32)]) -> Observations {
    let mut obs = Observations::new(n);
    for &(w, l) in pairs {
        obs.push_choice(w, &[l]).unwrap();
    }
    obs
}

fn tight() -> FitOptions {
    FitOptions {
        tolerance: 1e-10,
        ..FitOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The likelihood cannot see a common shift of all scores.
    #[test]
    fn likelihood_is_invariant_to_shifting_scores(data in pairs(8, 40), shift in -5.0f64..5.0) {
        let obs = observations(8, &data);
        let scores: Vec<f64> = (0..8).map(|i| (i as f64 * 0.37).sin()).collect();
        let shifted: Vec<f64> = scores.iter().map(|s| s + shift).collect();
        prop_assert!((log_likelihood_of(&obs, &scores) - log_likelihood_of(&obs, &shifted)).abs() < 1e-9);
    }

    /// One more win for an item never lowers its score.
    #[test]
    fn an_added_win_never_lowers_the_winner(data in pairs(8, 30), winner in 0u32..8, loser in 0u32..8) {
        prop_assume!(winner != loser);
        let before = fit(&observations(8, &data), &tight());
        let mut more = data.clone();
        more.push((winner, loser));
        let after = fit(&observations(8, &more), &tight());
        prop_assert!(after.scores[winner as usize] >= before.scores[winner as usize] - 1e-9);
        prop_assert!(after.scores[loser as usize] <= before.scores[loser as usize] + 1e-9);
    }

    /// The fit is a deterministic function of the data.
    #[test]
    fn fitting_is_deterministic(data in pairs(10, 50)) {
        let obs = observations(10, &data);
        prop_assert_eq!(fit(&obs, &tight()).scores, fit(&obs, &tight()).scores);
    }

    /// Every round schedules every item exactly once, in groups of 2..=4 with no repeats, and the
    /// same seed gives the same plan.
    #[test]
    fn rounds_cover_every_item_once(n in 2usize..200, seed in any::<u64>()) {
        let mut a = Planner::new(n, seed);
        let mut b = Planner::new(n, seed);
        for _ in 0..3 {
            let round = a.random_round();
            prop_assert_eq!(&round, &b.random_round());
            let mut seen = vec![0u32; n];
            for group in &round {
                prop_assert!((2..=4).contains(&group.items.len()));
                for &item in &group.items {
                    seen[item as usize] += 1;
                }
            }
            prop_assert!(seen.iter().all(|&c| c == 1));
        }
    }
}

/// Scores sampled from a Plackett-Luce model are recovered from full rankings of 4.
#[test]
fn recovers_true_scores_from_simulated_rankings() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let n = 60;
    let mut rng = StdRng::seed_from_u64(1);
    let truth: Vec<f64> = (0..n).map(|i| (i as f64 - 30.0) / 10.0).collect();
    let mut obs = Observations::new(n);
    let mut rounds = Planner::new(n, 2);
    for _ in 0..40 {
        for group in rounds.random_round() {
            // Draw a ranking by repeated Gumbel-max: the Plackett-Luce sampling process.
            let mut keyed: Vec<(f64, usize)> = group
                .items
                .iter()
                .enumerate()
                .map(|(slot, &item)| (truth[item as usize] - (-rng.random::<f64>().ln()).ln(), slot))
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
            let order: Vec<u8> = keyed.iter().map(|&(_, slot)| slot as u8).collect();
            let stages = (0..order.len() - 1)
                .map(|k| {
                    let slots = order[k..].to_vec();
                    let mut probs = vec![0.0; slots.len()];
                    probs[0] = 1.0;
                    Stage { slots, probs }
                })
                .collect();
            obs.push_outcome(&group.items, &GroupOutcome { stages }).unwrap();
        }
    }
    let fitted = fit(
        &obs,
        &FitOptions {
            prior: Prior::Gaussian { precision: 0.01 },
            ..FitOptions::default()
        },
    );
    assert!(fitted.converged);
    let mean = fitted.scores.iter().sum::<f64>() / n as f64;
    let max_err = fitted
        .scores
        .iter()
        .zip(&truth)
        .map(|(s, t)| (s - mean - t).abs())
        .fold(0.0, f64::max);
    assert!(max_err < 1.0, "max error {max_err}");
    // Roughly 95% of true scores should lie within 2 standard errors.
    let covered = (0..n)
        .filter(|&i| (fitted.scores[i] - mean - truth[i]).abs() < 2.0 * fitted.std_errors[i])
        .count();
    assert!(covered as f64 >= 0.85 * n as f64, "only {covered}/{n} within 2 SE");
}

/// Two separate clusters and one item never compared: all are ranked, only the larger cluster is
/// flagged as connected, and the lone item sits at the prior mean with the prior's uncertainty.
#[test]
fn disconnected_items_are_ranked_and_flagged() {
    let obs = observations(7, &[(0, 1), (1, 2), (0, 2), (2, 3), (4, 5), (5, 4), (4, 5)]);
    let fitted = fit(&obs, &FitOptions::default());
    assert_eq!(fitted.connected, vec![true, true, true, true, false, false, false]);
    assert_eq!(fitted.scores[6], 0.0);
    let prior_sd = 1.0 / DEFAULT_PRIOR_PRECISION.sqrt();
    assert!(
        (fitted.std_errors[6] - prior_sd).abs() < 1e-9,
        "{}",
        fitted.std_errors[6]
    );
    assert!(fitted.scores[0] > fitted.scores[1] && fitted.scores[1] > fitted.scores[3]);
    assert!(fitted.scores[4] > fitted.scores[5]);
}

/// Soft outcomes: a pair judged 70/30 many times fits a log-odds difference of ln(0.7/0.3).
#[test]
fn soft_pairs_fit_their_log_odds() {
    let mut obs = Observations::new(2);
    let outcome = GroupOutcome {
        stages: vec![Stage {
            slots: vec![0, 1],
            probs: vec![0.7, 0.3],
        }],
    };
    for _ in 0..100 {
        obs.push_outcome(&[0, 1], &outcome).unwrap();
    }
    let fitted = fit(
        &obs,
        &FitOptions {
            prior: Prior::Gaussian { precision: 0.0 },
            ..tight()
        },
    );
    let diff = fitted.scores[0] - fitted.scores[1];
    assert!((diff - (0.7f64 / 0.3).ln()).abs() < 1e-6, "{diff}");
    // Fisher information of 100 soft observations at p = 0.7: SE of the difference = 1/sqrt(100 p q),
    // split equally between the two mean-centred scores.
    let se_diff = 1.0 / (100.0f64 * 0.7 * 0.3).sqrt();
    assert!(
        (fitted.std_errors[0] - se_diff / 2.0).abs() < 1e-6,
        "{}",
        fitted.std_errors[0]
    );
    // With the other score known, all of the difference's uncertainty is the item's own.
    assert!(
        (fitted.own_std_errors[0] - se_diff).abs() < 1e-6,
        "{}",
        fitted.own_std_errors[0]
    );
}

/// Bad outcomes are refused with a reason, never silently recorded.
#[test]
fn invalid_outcomes_are_refused() {
    let mut obs = Observations::new(3);
    let stage = |slots: Vec<u8>, probs: Vec<f64>| GroupOutcome {
        stages: vec![Stage { slots, probs }],
    };
    assert!(obs.push_outcome(&[0, 1], &stage(vec![0, 1], vec![0.5, 0.6])).is_err());
    assert!(obs.push_outcome(&[0, 1], &stage(vec![0, 2], vec![0.5, 0.5])).is_err());
    assert!(obs.push_outcome(&[0, 0], &stage(vec![0, 1], vec![0.5, 0.5])).is_err());
    assert!(obs.push_outcome(&[0, 7], &stage(vec![0, 1], vec![0.5, 0.5])).is_err());
    assert!(obs
        .push_outcome(&[0, 1], &stage(vec![0, 1], vec![f64::NAN, 0.5]))
        .is_err());
    assert_eq!(obs.num_stages(), 0);
}

/// Groups larger than a comparator's 4 (choix's top-1 choices among many) are fitted, with slot
/// biases for the small groups only; groups over 255 items are refused by name. A choice among 6
/// used to index past the slot-bias table.
#[test]
fn groups_larger_than_four_are_fitted_without_a_slot_bias() {
    let mut obs = Observations::new(300);
    obs.push_choice(0, &[1, 2, 3, 4, 5]).unwrap();
    obs.push_choice(1, &[2, 3, 4, 5]).unwrap();
    obs.push_choice(2, &[3]).unwrap();
    let fitted = fit(
        &obs,
        &FitOptions {
            fit_slot_bias: true,
            ..tight()
        },
    );
    assert!(fitted.scores.iter().all(|s| s.is_finite()));
    assert!(fitted.scores[0] > fitted.scores[1] && fitted.scores[1] > fitted.scores[5]);
    let sizes: Vec<u8> = fitted.slot_bias.iter().map(|b| b.group_size).collect();
    assert!(sizes.iter().all(|&s| s <= 4), "slot biases reported for {sizes:?}");
    assert!(sizes.contains(&2), "the pair's slots are still fitted: {sizes:?}");

    let losers: Vec<u32> = (1..256).collect();
    let error = obs.push_choice(0, &losers).unwrap_err();
    assert!(error.to_string().contains("256 items"), "{error}");
}
