//! Comparison jobs driven by the simulated comparator: the plan is deterministic, covers every
//! item, respects the budget, stops for a stated reason, the fit recovers the slot bias, and
//! refits start from the last round's fit.

use engine::job::{Job, JobOptions};
use engine::rank::{fit, fit_from, StopReason};
use engine::schedule::{Group, Mode};
use engine::simulate::{Answer, Simulator};

fn latent(n: usize) -> Vec<f64> {
    (0..n).map(|i| ((i * 7919) % n) as f64 / n as f64 * 4.0 - 2.0).collect()
}

/// Run a job to the end; return every group asked, in order, and the finished job.
fn drive(n: usize, options: JobOptions, bias: [f64; 4]) -> (Vec<Group>, Job) {
    let mut sim = Simulator::new(latent(n), 0.8, bias, Answer::FullRanking, 3);
    let mut job = Job::new((0..n).map(|i| format!("img{i}")).collect(), options);
    let mut asked = Vec::new();
    loop {
        let groups = job.next_round();
        if groups.is_empty() {
            break;
        }
        for group in groups {
            job.record(&group, &sim.judge(&group.items)).unwrap();
            asked.push(group);
        }
    }
    (asked, job)
}

#[test]
fn adaptive_plans_are_deterministic_and_respect_the_budget() {
    let options = JobOptions {
        budget_calls_per_image: 2.0,
        stop_tolerance: 0.0,
        ..JobOptions::default()
    };
    let (first, job) = drive(101, options.clone(), [0.0; 4]);
    let (second, _) = drive(101, options, [0.0; 4]);
    assert_eq!(first, second, "same seed, same plan");
    assert_eq!(first.len(), 202, "2 calls per image over 101 images");
    assert_eq!(job.stop_reason(), Some(StopReason::Budget));
    for group in &first {
        let mut items = group.items.clone();
        items.sort_unstable();
        items.dedup();
        assert_eq!(items.len(), group.items.len(), "a group repeats an item: {group:?}");
    }
    let mut appearances = vec![0; 101];
    first
        .iter()
        .flat_map(|g| &g.items)
        .for_each(|&i| appearances[i as usize] += 1);
    // The random first round shows every item once; full-mode rounds then take the two thirds
    // with the most to gain, so no item is left behind after its first group.
    assert!(
        first[..26].iter().flat_map(|g| &g.items).count() == 101,
        "the first round shows every item"
    );
    assert!(
        appearances.iter().all(|&a| a >= 2),
        "every item is compared again after the first round: {appearances:?}"
    );
}

#[test]
fn stable_rankings_stop_early_and_say_so() {
    let options = JobOptions {
        budget_calls_per_image: 50.0,
        stop_tolerance: 0.01,
        ..JobOptions::default()
    };
    let (asked, job) = drive(40, options, [0.0; 4]);
    assert_eq!(job.stop_reason(), Some(StopReason::Stable));
    assert!(asked.len() < 2000, "stopped before the budget: {} calls", asked.len());
    assert_eq!(job.ranking().stop_reason, Some(StopReason::Stable));
}

#[test]
fn top_k_mode_reports_membership_probabilities() {
    let options = JobOptions {
        budget_calls_per_image: 2.0,
        mode: Mode::TopK { k: 10 },
        stop_tolerance: 0.0,
        ..JobOptions::default()
    };
    let (_, job) = drive(100, options, [0.0; 4]);
    let ranking = job.ranking();
    let p: Vec<f64> = ranking
        .items
        .iter()
        .map(|i| i.p_top_k.expect("p_top_k in top-k mode"))
        .collect();
    assert!(p[0] > 0.9 && p[99] < 0.1, "{p:?}");
    // Exactly 10 are in the top 10 whatever the truth, so the chances add up to about 10.
    let expected: f64 = p.iter().sum();
    assert!((expected - 10.0).abs() < 0.3, "expected top-k size {expected}");
}

/// With the first slot favoured by 0.3 log-odds, the fit finds every other slot about 0.3 below.
#[test]
fn slot_bias_is_recovered() {
    let options = JobOptions {
        budget_calls_per_image: 4.0,
        stop_tolerance: 0.0,
        ..JobOptions::default()
    };
    let (_, job) = drive(2000, options, [0.3, 0.0, 0.0, 0.0]);
    let fitted = job.fit();
    let biases: Vec<f64> = fitted
        .slot_bias
        .iter()
        .filter(|b| b.group_size == 4 && b.slot > 0)
        .map(|b| b.bias)
        .collect();
    assert_eq!(biases.len(), 3);
    for b in biases {
        assert!((b + 0.3).abs() < 0.05, "slot bias {b}, truth -0.3");
    }
}

/// A job refits from the last round's fit: it lands on the optimum a fit from zero finds, in
/// fewer steps (29 against 47 here). A start fitted to another number of items is ignored.
#[test]
fn refits_start_from_the_last_fit() {
    let options = JobOptions {
        budget_calls_per_image: 2.0,
        stop_tolerance: 0.0,
        mode: Mode::TopK { k: 30 },
        ..JobOptions::default()
    };
    let (_, job) = drive(300, options.clone(), [0.3, 0.0, 0.0, 0.0]);
    let warm = job.fit();
    let cold = fit(job.observations(), &options.fit);
    assert!(warm.converged && cold.converged);
    let gap = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(
        gap(&warm.scores, &cold.scores) < 1e-4,
        "{}",
        gap(&warm.scores, &cold.scores)
    );
    let biases = |f: &engine::rank::Fit| f.slot_bias.iter().map(|b| b.bias).collect::<Vec<_>>();
    assert!(gap(&biases(&warm), &biases(&cold)) < 1e-4);
    assert!(
        warm.iterations < cold.iterations,
        "warm {} steps, cold {}",
        warm.iterations,
        cold.iterations
    );
    let (_, other) = drive(40, options.clone(), [0.0; 4]);
    let mismatched = fit_from(job.observations(), &options.fit, Some(&other.fit()));
    assert_eq!(mismatched.scores, cold.scores);
    assert_eq!(mismatched.iterations, cold.iterations);
}

/// A top-k job whose k covers every image, or a threshold job that drops none, has no cut to
/// decide: it spends its budget ordering every image, as full mode does, instead of stopping
/// after the random round with the groups unconnected; its report still gives each image's
/// chance (1 or 0).
#[test]
fn a_cut_that_decides_nothing_plans_as_full_mode() {
    let options = |mode: Mode| JobOptions {
        budget_calls_per_image: 2.0,
        stop_tolerance: 0.0,
        mode,
        ..JobOptions::default()
    };
    let (full, _) = drive(20, options(Mode::Full), [0.0; 4]);
    for mode in [
        Mode::TopK { k: 20 },
        Mode::TopK { k: 100 },
        Mode::Threshold { fraction: 0.01 },
    ] {
        let (asked, job) = drive(20, options(mode), [0.0; 4]);
        assert_eq!(asked, full, "{mode:?} plans as full mode");
        let ranking = job.ranking();
        assert!(ranking.items.iter().all(|item| item.connected), "{mode:?}");
        let chances: Vec<f64> = ranking
            .items
            .iter()
            .map(|item| item.p_top_k.or(item.p_dropped).expect("a chance per image"))
            .collect();
        let expected = if matches!(mode, Mode::TopK { .. }) { 1.0 } else { 0.0 };
        assert!(chances.iter().all(|&p| p == expected), "{mode:?}: {chances:?}");
    }
}
