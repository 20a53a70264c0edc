//! What a job's refits cost: every round of a top-k job (k = N/10, 2 calls per image, the
//! simulated comparator of `bench_rank`) refitted from zero, the anchor, against refitted from
//! the previous round's fit, as `Job` does. Both fit the same answers after each round, side by
//! side, so the plans cannot differ; the table gives the seconds and MM steps summed over the
//! rounds, and the largest gap between the two fits' scores.
//!
//! ```text
//! bench_refit [N...]    default: 200 2000 20000
//! ```

use std::time::{Duration, Instant};

use engine::compare::GroupOutcome;
use engine::job::{Job, JobOptions};
use engine::rank::{fit, fit_from, Fit, FitOptions, Observations};
use engine::schedule::{Group, Mode};
use engine::simulate::{normal_latent, Answer, Simulator};

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("N")).collect();
    let sizes = if sizes.is_empty() {
        vec![200, 2_000, 20_000]
    } else {
        sizes
    };
    println!("| N | rounds | from zero (anchor) | from the last fit | ratio | largest score gap |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let rounds = top_k_job(n, 1);
        let options = fit_options();
        let mut obs = Observations::new(n);
        let (mut cold_time, mut warm_time) = (Duration::ZERO, Duration::ZERO);
        let (mut cold_steps, mut warm_steps, mut gap) = (0, 0, 0.0f64);
        let mut last: Option<Fit> = None;
        for round in &rounds {
            for (group, outcome) in round {
                obs.push_outcome(&group.items, outcome)
                    .expect("simulated answers are valid");
            }
            let started = Instant::now();
            let cold = fit(&obs, &options);
            cold_time += started.elapsed();
            let started = Instant::now();
            let warm = fit_from(&obs, &options, last.as_ref());
            warm_time += started.elapsed();
            cold_steps += cold.iterations;
            warm_steps += warm.iterations;
            gap = cold
                .scores
                .iter()
                .zip(&warm.scores)
                .map(|(a, b)| (a - b).abs())
                .fold(gap, f64::max);
            last = Some(warm);
        }
        println!(
            "| {n} | {} | {:.2} s ({cold_steps} steps) | {:.2} s ({warm_steps} steps) | {:.2}x | {gap:.1e} |",
            rounds.len(),
            cold_time.as_secs_f64(),
            warm_time.as_secs_f64(),
            cold_time.as_secs_f64() / warm_time.as_secs_f64()
        );
    }
}

fn fit_options() -> FitOptions {
    FitOptions {
        fit_slot_bias: true,
        ..FitOptions::default()
    }
}

/// Run a top-k job to the end and return each round's groups with their answers.
fn top_k_job(n: usize, seed: u64) -> Vec<Vec<(Group, GroupOutcome)>> {
    let latent = normal_latent(n, seed);
    let mut sim = Simulator::new(latent, 0.80, [0.3, 0.0, 0.0, 0.0], Answer::FullRanking, seed);
    let options = JobOptions {
        budget_calls_per_image: 2.0,
        seed,
        fit: fit_options(),
        mode: Mode::TopK { k: n / 10 },
        adaptive: true,
        stop_tolerance: 0.0,
    };
    let mut job = Job::new((0..n).map(|i| i.to_string()).collect(), options);
    let mut rounds = Vec::new();
    loop {
        let groups = job.next_round();
        if groups.is_empty() {
            return rounds;
        }
        let answered: Vec<(Group, GroupOutcome)> = groups
            .into_iter()
            .map(|group| {
                let outcome = sim.judge(&group.items);
                job.record(&group, &outcome).expect("simulated answers are valid");
                (group, outcome)
            })
            .collect();
        rounds.push(answered);
    }
}
