//! How much ranking each model call buys: simulated comparators (pair accuracy 0.80, first slot
//! favoured by 0.3 log-odds) ranked by random and adaptive schedules, scored against the truth.
//!
//! ```text
//! bench_rank table [SEEDS] [DUMP_DIR]   the full table; DUMP_DIR gets the random-schedule data
//!                                       (seed 1, N <= 2000) in reference form for choix
//! bench_rank topk [SEEDS]               top-10% precision at 2 calls per image, the worst-10%
//!                                       precision of threshold mode, how well their reported
//!                                       probabilities are calibrated, and the 2.5-call target
//! bench_rank slot-bias [SEEDS]          the slot-bias error at N = 2,000 by answer and budget,
//!                                       over many seeds (a few say little: it varies by half)
//! ```
//! `scripts/bench_rank.sh` runs both and fits choix to the dumped data.

use engine::agreement::{kendall_tau_b, spearman, top_precision};
use engine::job::{Job, JobOptions};
use engine::rank::{FitOptions, Ranking};
use engine::schedule::{focus::num_dropped, Mode};
use engine::simulate::{normal_latent, Answer, Simulator};

const PAIR_ACCURACY: f64 = 0.80;
const FIRST_SLOT_BIAS: f64 = 0.3;

struct Run {
    spearman: f64,
    kendall: f64,
    top_precision: f64,
    /// The share of the items ranked in the worst 10% that truly are.
    bottom_precision: f64,
    bias_error: f64,
    /// The root-mean-square error of the three fitted slot biases.
    bias_rms: f64,
    calls_per_image: f64,
    /// In top-k and threshold mode: each item's reported P(in the top k) or P(dropped), and
    /// whether it truly is.
    reported: Vec<(f64, bool)>,
    /// The same from a fixed cut between the two items that straddle it, as reports were made
    /// before they drew the cut: the anchor of the calibration table.
    fixed_cut: Vec<(f64, bool)>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seeds: u64 = args.get(1).map_or(3, |s| s.parse().unwrap());
    match args.first().map(String::as_str) {
        Some("table") => table(seeds, args.get(2).map(String::as_str)),
        Some("topk") => topk(seeds),
        Some("slot-bias") => slot_bias(seeds),
        _ => {
            eprintln!("usage: bench_rank table [SEEDS] [DUMP_DIR] | topk [SEEDS] | slot-bias [SEEDS]");
            std::process::exit(64);
        }
    }
}

fn table(seeds: u64, dump: Option<&str>) {
    print_header();
    for n in [200usize, 2_000, 20_000] {
        for answer in [Answer::BestOf, Answer::FullRanking] {
            for budget in [1.0, 2.0, 3.0, 4.0] {
                for adaptive in [false, true] {
                    let runs: Vec<Run> = (1..=seeds)
                        .map(|seed| {
                            let dump_to = (seed == 1 && !adaptive && n <= 2_000).then_some(dump).flatten();
                            run(n, answer, budget, adaptive, Mode::Full, seed, dump_to)
                        })
                        .collect();
                    print_row(n, answer, budget, if adaptive { "adaptive" } else { "random" }, &runs);
                }
            }
        }
    }
}

fn topk(seeds: u64) {
    let runs = |n: usize, budget: f64, adaptive: bool, mode: Mode| -> Vec<Run> {
        (1..=seeds)
            .map(|seed| run(n, Answer::FullRanking, budget, adaptive, mode, seed, None))
            .collect()
    };
    let sizes = [200usize, 2_000, 20_000];
    let random: Vec<Vec<Run>> = sizes.iter().map(|&n| runs(n, 2.0, false, Mode::Full)).collect();
    print_header();
    let top_k: Vec<Vec<Run>> = sizes
        .iter()
        .map(|&n| runs(n, 2.0, true, Mode::TopK { k: n / 10 }))
        .collect();
    for ((&n, random), top_k) in sizes.iter().zip(&random).zip(&top_k) {
        print_row(n, Answer::FullRanking, 2.0, "random", random);
        print_row(n, Answer::FullRanking, 2.0, "adaptive top-k", top_k);
    }
    // A curator dropping the worst 10%: how many of the dropped truly are among the worst 10%.
    println!();
    println!("| N | answer | calls/image | schedule | Spearman | worst-10% precision |");
    println!("|---|---|---|---|---|---|");
    let thresholds: Vec<Vec<Run>> = sizes
        .iter()
        .map(|&n| runs(n, 2.0, true, Mode::Threshold { fraction: 0.1 }))
        .collect();
    for ((&n, random), threshold) in sizes.iter().zip(&random).zip(&thresholds) {
        for (label, runs) in [("random", random), ("adaptive threshold 0.1", threshold)] {
            println!(
                "| {n} | full ranking | 2 ({:.2} used) | {label} | {:.4} | {:.3} |",
                mean(runs, |r| r.calls_per_image),
                mean(runs, |r| r.spearman),
                mean(runs, |r| r.bottom_precision),
            );
        }
    }
    println!();
    let pooled = |runs: &[Run], of: fn(&Run) -> &Vec<(f64, bool)>| -> Vec<(f64, bool)> {
        runs.iter().flat_map(|r| of(r).iter().copied()).collect()
    };
    println!("Calibration at N = 2000, 2 calls per image, reported (the cut drawn):");
    print_calibration(
        &pooled(&top_k[1], |r| &r.reported),
        &pooled(&thresholds[1], |r| &r.reported),
    );
    println!();
    println!("The same jobs, from a fixed cut (the anchor):");
    print_calibration(
        &pooled(&top_k[1], |r| &r.fixed_cut),
        &pooled(&thresholds[1], |r| &r.fixed_cut),
    );
    // The headline target: full rankings at 2.5 calls per image.
    println!();
    print_header();
    for n in sizes {
        print_row(n, Answer::FullRanking, 2.5, "adaptive", &runs(n, 2.5, true, Mode::Full));
    }
}

/// The slot-bias target (within 0.05 at N = 2,000), by answer and budget: the mean over the
/// seeds of the largest of the three errors (the bench table's figure) and of their
/// root-mean-square. `scripts/slot_bias_bound.py` gives the least that any fit could reach.
fn slot_bias(seeds: u64) {
    println!("| N | answer | calls/image | schedule | seeds | largest slot-bias error | root-mean-square error |");
    println!("|---|---|---|---|---|---|---|");
    for answer in [Answer::FullRanking, Answer::BestOf] {
        for budget in [1.0, 2.0, 3.0, 4.0] {
            for adaptive in [false, true] {
                let runs: Vec<Run> = (1..=seeds)
                    .map(|seed| run(2_000, answer, budget, adaptive, Mode::Full, seed, None))
                    .collect();
                let rms = (runs.iter().map(|r| r.bias_rms.powi(2)).sum::<f64>() / runs.len() as f64).sqrt();
                println!(
                    "| 2000 | {} | {budget} | {} | {seeds} | {:.4} | {rms:.4} |",
                    answer_name(answer),
                    if adaptive { "adaptive" } else { "random" },
                    mean(&runs, |r| r.bias_error),
                );
            }
        }
    }
}

/// How far the reported probabilities can be trusted: items pooled over the seeds by the
/// probability reported at the end of the job, against the share that truly is in the top k (or
/// among the worst 10%, for threshold mode); and the Brier score, the mean squared gap between
/// the probability and the truth (0 or 1).
fn print_calibration(top_k: &[(f64, bool)], threshold: &[(f64, bool)]) {
    const EDGES: [f64; 9] = [0.0, 0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98, 1.0];
    let bucket = |pairs: &[(f64, bool)], lo: f64, hi: f64| {
        let inside: Vec<(f64, bool)> = pairs
            .iter()
            .copied()
            .filter(|&(p, _)| p >= lo && (p < hi || hi == 1.0))
            .collect();
        let count = inside.len().max(1) as f64;
        let mean_p = inside.iter().map(|&(p, _)| p).sum::<f64>() / count;
        let truly = inside.iter().filter(|&&(_, t)| t).count() as f64 / count;
        format!("{} | {mean_p:.3} | {truly:.3}", inside.len())
    };
    let brier = |pairs: &[(f64, bool)]| {
        pairs
            .iter()
            .map(|&(p, t)| (p - f64::from(u8::from(t))).powi(2))
            .sum::<f64>()
            / pairs.len().max(1) as f64
    };
    println!();
    println!("| reported P | top-k: items | mean P(in top k) | truly in top k | threshold: items | mean P(dropped) | truly among worst 10% |");
    println!("|---|---|---|---|---|---|---|");
    for w in EDGES.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        println!(
            "| {lo:.2}-{hi:.2} | {} | {} |",
            bucket(top_k, lo, hi),
            bucket(threshold, lo, hi)
        );
    }
    println!(
        "| Brier score | {} | {:.5} | | {} | {:.5} | |",
        top_k.len(),
        brier(top_k),
        threshold.len(),
        brier(threshold)
    );
}

/// Each item's reported cut probability and whether the truth puts it on that side of the cut.
fn reported_probabilities(ranking: &Ranking, mode: Mode, truth: &[f64]) -> Vec<(f64, bool)> {
    let mut probs = vec![f64::NAN; truth.len()];
    for item in &ranking.items {
        let index: usize = item.name.parse().expect("items are named by index");
        probs[index] = match mode {
            Mode::TopK { .. } => item.p_top_k,
            Mode::Threshold { .. } => item.p_dropped,
            Mode::Full => None,
        }
        .expect("the cut modes report a probability for every item");
    }
    on_the_side(&probs, mode, truth)
}

/// Each item's cut probability (by item index) and whether the truth puts it on that side.
fn on_the_side(probs: &[f64], mode: Mode, truth: &[f64]) -> Vec<(f64, bool)> {
    let n = truth.len();
    let true_rank = ranks(truth);
    let inside = |i: usize| match mode {
        Mode::TopK { k } => true_rank[i] < k,
        Mode::Threshold { fraction } => true_rank[i] >= n - num_dropped(fraction, n),
        Mode::Full => false,
    };
    probs.iter().enumerate().map(|(i, &p)| (p, inside(i))).collect()
}

fn print_header() {
    println!("| N | answer | calls/image | schedule | Spearman | Kendall | top-10% precision | slot-bias error |");
    println!("|---|---|---|---|---|---|---|---|");
}

/// The mean of `f` over the runs.
fn mean(runs: &[Run], f: fn(&Run) -> f64) -> f64 {
    runs.iter().map(f).sum::<f64>() / runs.len() as f64
}

fn answer_name(answer: Answer) -> &'static str {
    match answer {
        Answer::BestOf => "best of 4",
        Answer::FullRanking => "full ranking",
    }
}

fn print_row(n: usize, answer: Answer, budget: f64, schedule: &str, runs: &[Run]) {
    let mean = |f: fn(&Run) -> f64| mean(runs, f);
    let spread = |f: fn(&Run) -> f64| {
        let m = mean(f);
        (runs.iter().map(|r| (f(r) - m).powi(2)).sum::<f64>() / runs.len().max(2).saturating_sub(1) as f64).sqrt()
    };
    let answer = answer_name(answer);
    println!(
        "| {n} | {answer} | {budget} ({:.2} used) | {schedule} | {:.4} ± {:.4} | {:.3} | {:.3} | {:.3} |",
        mean(|r| r.calls_per_image),
        mean(|r| r.spearman),
        spread(|r| r.spearman),
        mean(|r| r.kendall),
        mean(|r| r.top_precision),
        mean(|r| r.bias_error),
    );
}

fn run(n: usize, answer: Answer, budget: f64, adaptive: bool, mode: Mode, seed: u64, dump: Option<&str>) -> Run {
    let latent = normal_latent(n, seed);
    let mut sim = Simulator::new(latent, PAIR_ACCURACY, [FIRST_SLOT_BIAS, 0.0, 0.0, 0.0], answer, seed);
    let truth = sim.true_scores();
    let options = JobOptions {
        budget_calls_per_image: budget,
        seed,
        fit: FitOptions {
            fit_slot_bias: true,
            ..FitOptions::default()
        },
        mode,
        adaptive,
        stop_tolerance: 0.0,
    };
    let mut job = Job::new((0..n).map(|i| i.to_string()).collect(), options);
    let mut dumped = Vec::new();
    loop {
        let groups = job.next_round();
        if groups.is_empty() {
            break;
        }
        for group in groups {
            let outcome = sim.judge(&group.items);
            if dump.is_some() {
                dumped.push(reference_record(&group.items, &outcome, answer));
            }
            job.record(&group, &outcome).unwrap();
        }
    }
    if let Some(dir) = dump {
        write_reference(dir, n, answer, budget, &dumped, &truth);
    }
    let fitted = job.fit();
    let size4_bias: Vec<f64> = fitted
        .slot_bias
        .iter()
        .filter(|b| b.group_size == 4 && b.slot > 0)
        .map(|b| b.bias)
        .collect();
    // Truth: slot 0 is favoured by FIRST_SLOT_BIAS, so every other slot sits that far below it.
    let bias_errors: Vec<f64> = size4_bias.iter().map(|b| (b + FIRST_SLOT_BIAS).abs()).collect();
    Run {
        spearman: spearman(&fitted.scores, &truth),
        kendall: kendall_tau_b(&fitted.scores, &truth),
        top_precision: top_precision(&fitted.scores, &truth, n / 10),
        bottom_precision: top_precision(&negated(&fitted.scores), &negated(&truth), n / 10),
        bias_error: bias_errors.iter().copied().fold(0.0, f64::max),
        bias_rms: (bias_errors.iter().map(|e| e * e).sum::<f64>() / bias_errors.len().max(1) as f64).sqrt(),
        calls_per_image: job.calls_planned() as f64 / n as f64,
        reported: match mode {
            Mode::Full => Vec::new(),
            _ => reported_probabilities(&job.ranking_from(&fitted), mode, &truth),
        },
        fixed_cut: match mode.probabilities(&fitted.scores, &fitted.relative_std_errors) {
            None => Vec::new(),
            Some(probs) => on_the_side(&probs, mode, &truth),
        },
    }
}

/// A comparison in choix's form: `[winner, [losers]]` for best-of, the order for full rankings.
fn reference_record(items: &[u32], outcome: &engine::compare::GroupOutcome, answer: Answer) -> serde_json::Value {
    let winner_of = |stage: &engine::compare::Stage| {
        let k = stage.probs.iter().position(|&p| p == 1.0).unwrap();
        items[stage.slots[k] as usize]
    };
    match answer {
        Answer::BestOf => {
            let w = winner_of(&outcome.stages[0]);
            serde_json::json!([w, items.iter().filter(|&&i| i != w).collect::<Vec<_>>()])
        }
        Answer::FullRanking => {
            let mut order: Vec<u32> = outcome.stages.iter().map(winner_of).collect();
            let last = items.iter().copied().find(|i| !order.contains(i));
            order.extend(last);
            serde_json::json!(order)
        }
    }
}

fn write_reference(dir: &str, n: usize, answer: Answer, budget: f64, records: &[serde_json::Value], truth: &[f64]) {
    let kind = if answer == Answer::BestOf { "top1" } else { "rankings" };
    let json = serde_json::json!({"kind": kind, "n_items": n, "alpha": 0.01, "budget": budget,
        "comparisons": records, "true_params": truth});
    std::fs::write(format!("{dir}/{kind}-n{n}-b{budget}.json"), json.to_string()).unwrap();
}

fn ranks(v: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[j].total_cmp(&v[i]));
    let mut r = vec![0; v.len()];
    order.iter().enumerate().for_each(|(rank, &i)| r[i] = rank);
    r
}

fn negated(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| -x).collect()
}
