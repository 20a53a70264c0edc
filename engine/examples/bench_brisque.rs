//! Time the classical metrics per image: decode once, then score each image a few times and
//! report the fastest run (the one least disturbed by other load on the machine), single-threaded,
//! so the figure compares fairly with the Python package (`scripts/bench_brisque.sh` runs both
//! side by side, timed the same way).
//!
//! Usage: `cargo run --release -p qrank-engine --example bench_brisque -- [--reps N] FILES...`
//!
//! Prints one tab-separated line per image (file, size, BRISQUE, ms, NIQE, ms; NIQE is NaN for
//! images under 194 pixels a side), then `MEAN_MS brisque <ms> niqe <ms>`.

use std::time::Instant;

use engine::classical::{brisque_score, niqe_score};

/// Fastest wall time of `reps` calls to `f` in milliseconds, and the last result.
fn time_ms(reps: usize, mut f: impl FnMut() -> f64) -> (f64, f64) {
    let mut best = f64::INFINITY;
    let mut value = f64::NAN;
    for _ in 0..reps {
        let start = Instant::now();
        value = std::hint::black_box(f());
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
    }
    (best, value)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut reps = 5;
    if let Some(i) = args.iter().position(|a| a == "--reps") {
        reps = args.get(i + 1).ok_or("--reps needs a number")?.parse()?;
        args.drain(i..=i + 1);
    }
    if args.is_empty() || reps == 0 {
        return Err("usage: bench_brisque [--reps N] FILES...".into());
    }
    let (mut total_brisque, mut total_niqe, mut num_niqe) = (0.0, 0.0, 0);
    println!("file\tsize\tbrisque\tbrisque_ms\tniqe\tniqe_ms");
    for path in &args {
        let rgb = image::open(path).map_err(|e| format!("{path}: {e}"))?.to_rgb8();
        let (b_ms, b) = time_ms(reps, || brisque_score(&rgb));
        let (n_ms, n) = time_ms(reps, || niqe_score(&rgb));
        total_brisque += b_ms;
        if n.is_finite() {
            total_niqe += n_ms;
            num_niqe += 1;
        }
        println!(
            "{path}\t{}x{}\t{b:.4}\t{b_ms:.2}\t{n:.4}\t{n_ms:.2}",
            rgb.width(),
            rgb.height()
        );
    }
    let mean_niqe = if num_niqe > 0 {
        total_niqe / num_niqe as f64
    } else {
        f64::NAN
    };
    println!(
        "MEAN_MS brisque {:.3} niqe {:.3}",
        total_brisque / args.len() as f64,
        mean_niqe
    );
    Ok(())
}
