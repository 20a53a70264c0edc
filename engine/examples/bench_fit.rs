//! Benchmark of the Plackett-Luce fit.
//!
//! ```text
//! bench_fit generate N SEED FILE   write N items with 4N top-1 groups of 4 as a reference-form JSON
//! bench_fit fit FILE               time our fit of FILE (best of 3): choix's regulariser and our Gaussian prior
//! bench_fit large N OBS            time a fit of OBS top-1 groups of 4 over N items, in memory
//! ```
//! `scripts/bench_fit.sh` runs these beside choix on the same data.

use std::time::Instant;

use engine::agreement::spearman;
use engine::rank::{fit, parse_comparisons, FitOptions, Observations, Prior};
use rand::{rngs::StdRng, Rng, SeedableRng};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).unwrap_or_else(|| usage()).as_str();
    match arg(0) {
        "generate" => generate(arg(1).parse().unwrap(), arg(2).parse().unwrap(), arg(3)),
        "fit" => fit_file(arg(1)),
        "large" => large(arg(1).parse().unwrap(), arg(2).parse().unwrap()),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: bench_fit generate N SEED FILE | fit FILE | large N OBS");
    std::process::exit(64)
}

/// Draw one group of 4 distinct items and its Plackett-Luce winner (Gumbel-max).
fn draw_group(rng: &mut StdRng, truth: &[f64]) -> (u32, [u32; 3]) {
    let n = truth.len() as u32;
    let mut group = [0u32; 4];
    for k in 0..4 {
        group[k] = loop {
            let candidate = rng.random_range(0..n);
            if !group[..k].contains(&candidate) {
                break candidate;
            }
        };
    }
    let gumbel = |rng: &mut StdRng| -(-rng.random::<f64>().max(1e-300).ln()).ln();
    let winner = (0..4).max_by(|&a, &b| {
        let (ua, ub) = (
            truth[group[a] as usize] + gumbel(rng),
            truth[group[b] as usize] + gumbel(rng),
        );
        ua.total_cmp(&ub)
    });
    let w = winner.unwrap();
    let mut losers = [0u32; 3];
    let mut j = 0;
    for (k, &item) in group.iter().enumerate() {
        if k != w {
            losers[j] = item;
            j += 1;
        }
    }
    (group[w], losers)
}

fn truth(n: usize, rng: &mut StdRng) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-2.0..2.0)).collect()
}

fn generate(n: usize, seed: u64, file: &str) {
    let mut rng = StdRng::seed_from_u64(seed);
    let truth = truth(n, &mut rng);
    let comparisons: Vec<_> = (0..4 * n).map(|_| draw_group(&mut rng, &truth)).collect();
    let json = serde_json::json!({
        "kind": "top1", "n_items": n, "alpha": 0.01, "comparisons": comparisons, "true_params": truth,
    });
    std::fs::write(file, json.to_string()).unwrap();
}

fn fit_file(file: &str) {
    let set = parse_comparisons(&std::fs::read_to_string(file).unwrap()).unwrap();
    let alpha = set.alpha.unwrap_or(0.01);
    for (label, prior) in [
        ("choix-alpha", Prior::ChoixAlpha { alpha }),
        ("gaussian", Prior::Gaussian { precision: alpha }),
    ] {
        let options = FitOptions {
            prior,
            tolerance: 1e-8,
            ..FitOptions::default()
        };
        let mut seconds = f64::INFINITY;
        let mut fitted = None;
        for _ in 0..3 {
            // Best of 3, as for choix.
            let started = Instant::now();
            fitted = Some(fit(&set.observations, &options));
            seconds = seconds.min(started.elapsed().as_secs_f64());
        }
        let fitted = fitted.expect("three fits ran");
        let scores = serde_json::to_string(&fitted.scores).unwrap();
        println!(
            "{{\"fit\": \"{label}\", \"seconds\": {seconds}, \"iterations\": {}, \"converged\": {}, \"scores\": {scores}}}",
            fitted.iterations, fitted.converged
        );
    }
}

fn large(n: usize, num_obs: usize) {
    let mut rng = StdRng::seed_from_u64(7);
    let truth = truth(n, &mut rng);
    let mut obs = Observations::new(n);
    for _ in 0..num_obs {
        let (winner, losers) = draw_group(&mut rng, &truth);
        obs.push_choice(winner, &losers).unwrap();
    }
    let started = Instant::now();
    let fitted = fit(&obs, &FitOptions::default());
    let seconds = started.elapsed().as_secs_f64();
    let peak_mb = peak_rss_kb() as f64 / 1024.0;
    let spearman = spearman(&fitted.scores, &truth);
    println!(
        "{{\"items\": {n}, \"observations\": {num_obs}, \"fit_seconds\": {seconds:.3}, \"iterations\": {}, \
         \"converged\": {}, \"peak_rss_mb\": {peak_mb:.0}, \"spearman_vs_truth\": {spearman:.4}, \"threads\": {}}}",
        fitted.iterations,
        fitted.converged,
        rayon::current_num_threads()
    );
}

/// Peak resident memory of this process so far (Linux `VmHWM`), in KiB.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
