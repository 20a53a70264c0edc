//! `qrank eval`: how far a ranking agrees with human opinion, the way image-quality work
//! reports it (SRCC, KRCC and PLCC against mean opinion scores), and how many of the images it
//! puts in the best or worst fraction truly belong there.
//!
//! [`tables`] reads both sides. Names are matched whole, or else by their last path parts, so
//! `photos/koniq/1234.jpg` in the ranking finds `1234.jpg` in the truth.

mod tables;

use std::collections::HashMap;

use anyhow::Result;
use engine::agreement::{kendall_tau_b, pearson, spearman, spearman_interval, top_precision};
use engine::logistic;

use crate::cli::{EvalArgs, UsageError};
use crate::commands::warn;
use crate::exit;
use tables::{read_ranking, read_truth, Scored};

/// The ranked images that have a truth score, paired, and what was left over on either side.
#[derive(Debug)]
pub struct Joined {
    pub names: Vec<String>,
    pub ranked: Vec<f64>,
    pub truth: Vec<f64>,
    /// Ranked images the truth does not score.
    pub without_truth: Vec<String>,
    /// Truth rows that no ranked image matched.
    pub not_ranked: Vec<String>,
}

/// Pair each ranked image with its truth row: by its whole name, or else by its last path parts
/// (`a/b/c.jpg` tries `b/c.jpg`, then `c.jpg`). Two ranked images that find the same row are an
/// error: the truth's names must then carry their folders.
pub fn join(ranking: &Scored, truth: &Scored) -> Result<Joined> {
    let by_name: HashMap<&str, usize> = truth.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let mut taken: HashMap<usize, &str> = HashMap::new();
    let mut joined = Joined {
        names: Vec::new(),
        ranked: Vec::new(),
        truth: Vec::new(),
        without_truth: Vec::new(),
        not_ranked: Vec::new(),
    };
    for (name, &score) in ranking.names.iter().zip(&ranking.scores) {
        let row = suffixes(name).find_map(|suffix| by_name.get(suffix).copied());
        let Some(row) = row else {
            joined.without_truth.push(name.clone());
            continue;
        };
        if let Some(other) = taken.insert(row, name) {
            return Err(UsageError(format!(
                "{other} and {name} both match the truth's {}; give the truth's names with their folders",
                truth.names[row]
            ))
            .into());
        }
        joined.names.push(name.clone());
        joined.ranked.push(score);
        joined.truth.push(truth.scores[row]);
    }
    joined.not_ranked = (0..truth.names.len())
        .filter(|row| !taken.contains_key(row))
        .map(|row| truth.names[row].clone())
        .collect();
    Ok(joined)
}

/// `a/b/c.jpg`, `b/c.jpg`, `c.jpg` (a URL's scheme and host are parts like any other).
fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    std::iter::once(name).chain(name.match_indices('/').map(|(i, _)| &name[i + 1..]))
}

/// The figures `qrank eval` reports.
#[derive(Debug, serde::Serialize)]
pub struct Agreement {
    pub num_images: usize,
    pub srcc: f64,
    /// 95% interval of the SRCC (Fisher's z); absent under 4 images.
    pub srcc_95: Option<(f64, f64)>,
    pub krcc: f64,
    /// Pearson's correlation of the truth with the scores mapped by the four-parameter
    /// logistic fitted between them (`engine::logistic`), as papers report PLCC; negative when
    /// the fitted curve falls. Absent under 5 images.
    pub plcc: Option<f64>,
    /// Pearson's correlation of the raw scores with the truth.
    pub plcc_linear: f64,
    /// The fraction whose precision is reported, and how many images that is.
    pub fraction: f64,
    pub fraction_count: usize,
    /// Of the images ranked in the best (worst) fraction, the share truly there.
    pub best_precision: f64,
    pub worst_precision: f64,
}

/// SRCC, KRCC and the best and worst `fraction`'s precision of the joined pairs.
pub fn agreement(joined: &Joined, fraction: f64) -> Agreement {
    let n = joined.ranked.len();
    let count = ((fraction * n as f64).round() as usize).clamp(1, n.max(1));
    let negated = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
    let srcc = spearman(&joined.ranked, &joined.truth);
    Agreement {
        num_images: n,
        srcc,
        srcc_95: spearman_interval(srcc, n),
        krcc: kendall_tau_b(&joined.ranked, &joined.truth),
        plcc: logistic::plcc(&joined.ranked, &joined.truth),
        plcc_linear: pearson(&joined.ranked, &joined.truth),
        fraction,
        fraction_count: count,
        best_precision: top_precision(&joined.ranked, &joined.truth, count),
        worst_precision: top_precision(&negated(&joined.ranked), &negated(&joined.truth), count),
    }
}

/// `qrank eval RANKING --truth FILE`.
pub fn eval(args: EvalArgs) -> Result<u8> {
    if !(args.fraction > 0.0 && args.fraction < 1.0) {
        return Err(UsageError(format!("--fraction must be between 0 and 1, got {}", args.fraction)).into());
    }
    let ranking = read_ranking(&args.ranking)?;
    let truth = read_truth(
        &args.truth,
        args.truth_name.as_deref(),
        args.truth_score.as_deref(),
        args.lower_is_better,
    )?;
    if truth.column.to_ascii_lowercase().contains("dmos") && !args.lower_is_better {
        warn(&format!(
            "the scores are {}: lower is better there in some datasets (LIVE, CSIQ) and not in others \
             (KADID-10k); pass --lower-is-better if it is here",
            truth.column
        ));
    }
    let joined = join(&ranking, &truth.scored)?;
    let some = |names: &[String]| names.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if !joined.without_truth.is_empty() {
        warn(&format!(
            "ranked images with no score in {}: {} (such as {}); they are left out",
            args.truth.display(),
            joined.without_truth.len(),
            some(&joined.without_truth)
        ));
    }
    if !joined.not_ranked.is_empty() {
        warn(&format!(
            "images scored in {} but not in the ranking: {} (such as {})",
            args.truth.display(),
            joined.not_ranked.len(),
            some(&joined.not_ranked)
        ));
    }
    if joined.names.len() < 2 {
        anyhow::bail!(
            "{} of the {} ranked images have a score in {}: too few to compare orders",
            joined.names.len(),
            ranking.names.len(),
            args.truth.display()
        );
    }
    let figures = agreement(&joined, args.fraction);
    if args.json {
        let json = serde_json::json!({
            "ranking": args.ranking, "truth": args.truth, "truth_column": truth.column,
            "truth_lower_is_better": args.lower_is_better, "agreement": figures,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(exit::OK);
    }
    let flipped = if args.lower_is_better { " (lower is better)" } else { "" };
    println!(
        "{} against {}{flipped} in {}: {} images",
        args.ranking.display(),
        truth.column,
        args.truth.display(),
        figures.num_images
    );
    let interval = figures
        .srcc_95
        .map(|(low, high)| format!("   95% interval {low:.3} to {high:.3}"))
        .unwrap_or_default();
    println!("SRCC  {:.4}{interval}", figures.srcc);
    println!("KRCC  {:.4}", figures.krcc);
    match figures.plcc {
        Some(plcc) => println!(
            "PLCC  {plcc:.4}   after the 4-parameter logistic fit; linear {:.4}",
            figures.plcc_linear
        ),
        None => println!(
            "PLCC  {:.4}   linear (the logistic fit needs 5 images)",
            figures.plcc_linear
        ),
    }
    // Rounded, so that 0.07 reads 7, not 7.000000000000001.
    let percent = (figures.fraction * 100_000.0).round() / 1000.0;
    let images = if figures.fraction_count == 1 { "image" } else { "images" };
    for (side, precision) in [("best", figures.best_precision), ("worst", figures.worst_precision)] {
        println!(
            "{side} {percent}% ({} {images}): {:.3} of them truly among the {side} {percent}%",
            figures.fraction_count, precision
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(pairs: &[(&str, f64)]) -> Scored {
        let mut s = Scored::default();
        pairs.iter().for_each(|&(n, x)| s.push(n, x));
        s
    }

    #[test]
    fn names_match_whole_or_by_their_last_parts() {
        let ranking = scored(&[("photos/a.jpg", 3.0), ("s3://bucket/set/b.jpg", 2.0), ("c.jpg", 1.0)]);
        let truth = scored(&[("a.jpg", 30.0), ("set/b.jpg", 20.0), ("d.jpg", 0.0)]);
        let joined = join(&ranking, &truth).unwrap();
        assert_eq!(joined.names, ["photos/a.jpg", "s3://bucket/set/b.jpg"]);
        assert_eq!(joined.truth, [30.0, 20.0]);
        assert_eq!(joined.without_truth, ["c.jpg"]);
        assert_eq!(joined.not_ranked, ["d.jpg"]);
    }

    #[test]
    fn two_images_matching_one_row_are_refused() {
        let ranking = scored(&[("x/a.jpg", 1.0), ("y/a.jpg", 2.0)]);
        let err = join(&ranking, &scored(&[("a.jpg", 1.0)])).unwrap_err().to_string();
        assert!(err.contains("x/a.jpg and y/a.jpg both match"), "{err}");
    }

    #[test]
    fn fractions_round_to_at_least_one_image() {
        let joined = join(
            &scored(&[("a", 2.0), ("b", 1.0), ("c", 0.0)]),
            &scored(&[("a", 0.0), ("b", 1.0), ("c", 2.0)]),
        )
        .unwrap();
        let reversed = agreement(&joined, 0.1);
        assert_eq!(reversed.fraction_count, 1);
        assert_eq!((reversed.best_precision, reversed.worst_precision), (0.0, 0.0));
        assert!((reversed.srcc + 1.0).abs() < 1e-12 && (reversed.krcc + 1.0).abs() < 1e-12);
        assert!(reversed.srcc_95.is_none(), "three images give no interval");
        assert!((reversed.plcc_linear + 1.0).abs() < 1e-12);
        assert_eq!(reversed.plcc, None, "three images are too few for the logistic");
    }
}
