//! How far one ordering of items agrees with another: a ranking against the truth, where the
//! truth is human opinion scores (MOS) for `qrank eval`, or a simulation's latent scores for the
//! benches. The rank correlations are the ones image-quality work reports (SRCC, KRCC), with ties
//! counted as scipy counts them, so figures can be compared with published ones. The values
//! must be numbers: NaN has no place in an order (`qrank eval` refuses it when reading).

/// Ranks from 1, ties sharing the mean of the ranks they span (scipy's `rankdata` "average").
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let values = &without_negative_zero(values);
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let tied = order[start..]
            .iter()
            .take_while(|&&i| values[i] == values[order[start]])
            .count();
        // Ranks start..start+tied (from 0) become their mean, plus 1.
        let rank = start as f64 + (tied as f64 + 1.0) / 2.0;
        order[start..start + tied].iter().for_each(|&i| ranks[i] = rank);
        start += tied;
    }
    ranks
}

/// Pearson's linear correlation; NaN when either side has no spread.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "pearson: sides of different lengths");
    let n = a.len() as f64;
    let (mean_a, mean_b) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - mean_a, y - mean_b);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    ab / (aa * bb).sqrt()
}

/// Spearman's rank correlation (SRCC): Pearson's on average ranks.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&average_ranks(a), &average_ranks(b))
}

/// A 95% interval for a Spearman correlation `rho` over `n` items, from Fisher's z with the
/// standard error `sqrt(1.06 / (n - 3))` of Fieller, Hartley and Pearson (1957); `None` below 4
/// items, or when `rho` is not a number.
pub fn spearman_interval(rho: f64, n: usize) -> Option<(f64, f64)> {
    if n < 4 || rho.is_nan() {
        return None;
    }
    let z = rho.clamp(-1.0 + 1e-12, 1.0 - 1e-12).atanh();
    let half_width = 1.959_964 * (1.06 / (n as f64 - 3.0)).sqrt();
    Some(((z - half_width).tanh(), (z + half_width).tanh()))
}

/// Kendall's tau-b (KRCC), in O(n log n) by Knight's method (1966): sort by `a` (then `b`),
/// count the swaps a merge sort by `b` makes, and correct for ties on either side.
pub fn kendall_tau_b(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "kendall_tau_b: sides of different lengths");
    let (a, b) = (&without_negative_zero(a), &without_negative_zero(b));
    let mut order: Vec<usize> = (0..a.len()).collect();
    order.sort_by(|&i, &j| a[i].total_cmp(&a[j]).then(b[i].total_cmp(&b[j])));
    let pairs = |tied: usize| (tied * tied.saturating_sub(1) / 2) as f64;
    let tied_in = |same: &dyn Fn(usize, usize) -> bool| -> f64 {
        order.chunk_by(|&i, &j| same(i, j)).map(|run| pairs(run.len())).sum()
    };
    let tied_a = tied_in(&|i, j| a[i] == a[j]);
    let tied_both = tied_in(&|i, j| a[i] == a[j] && b[i] == b[j]);
    let mut by_b: Vec<f64> = order.iter().map(|&i| b[i]).collect();
    let swaps = merge_sort_swaps(&mut by_b) as f64;
    let tied_b: f64 = by_b.chunk_by(|x, y| x == y).map(|run| pairs(run.len())).sum();
    let all = pairs(a.len());
    let concordant_minus_discordant = all - tied_a - tied_b + tied_both - 2.0 * swaps;
    concordant_minus_discordant / ((all - tied_a) * (all - tied_b)).sqrt()
}

/// `values` with -0 made +0. The sorts here order by `total_cmp`, which puts -0 before +0,
/// while ties are found by `==`, which holds them equal; a tie that the sort had split would
/// count as a discordant pair. (Rounded scores hold -0: `round(-0.04, 1)`.)
fn without_negative_zero(values: &[f64]) -> Vec<f64> {
    values.iter().map(|&x| if x == 0.0 { 0.0 } else { x }).collect()
}

/// Sort `values` ascending, and return how many pairs were out of order (equal ones are not).
fn merge_sort_swaps(values: &mut [f64]) -> u64 {
    if values.len() < 2 {
        return 0;
    }
    let mid = values.len() / 2;
    let mut swaps = merge_sort_swaps(&mut values[..mid]) + merge_sort_swaps(&mut values[mid..]);
    let mut merged = Vec::with_capacity(values.len());
    let (mut left, mut right) = (0, mid);
    while left < mid && right < values.len() {
        if values[left] <= values[right] {
            merged.push(values[left]);
            left += 1;
        } else {
            merged.push(values[right]);
            swaps += (mid - left) as u64;
            right += 1;
        }
    }
    merged.extend_from_slice(&values[left..mid]);
    merged.extend_from_slice(&values[right..]);
    values.copy_from_slice(&merged);
    swaps
}

/// Of the `count` items best by `estimate`, the share that are among the `count` best by
/// `truth` (ties at the edge of either set broken by position). For the worst, pass both
/// negated.
pub fn top_precision(estimate: &[f64], truth: &[f64], count: usize) -> f64 {
    assert_eq!(estimate.len(), truth.len(), "top_precision: sides of different lengths");
    let count = count.min(estimate.len());
    if count == 0 {
        return f64::NAN;
    }
    let best = |values: &[f64]| {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[j].total_cmp(&values[i]).then(i.cmp(&j)));
        let mut chosen = vec![false; values.len()];
        order[..count].iter().for_each(|&i| chosen[i] = true);
        chosen
    };
    let (picked, truly) = (best(estimate), best(truth));
    let hits = picked.iter().zip(&truly).filter(|&(&p, &t)| p && t).count();
    hits as f64 / count as f64
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Kendall's tau-b by its definition, over every pair.
    fn tau_b_by_pairs(a: &[f64], b: &[f64]) -> f64 {
        let (mut concordant, mut discordant, mut only_a, mut only_b) = (0.0_f64, 0.0, 0.0, 0.0);
        for i in 0..a.len() {
            for j in i + 1..a.len() {
                let (da, db) = (a[i] - a[j], b[i] - b[j]);
                match (da == 0.0, db == 0.0) {
                    (true, true) => {}
                    (true, false) => only_a += 1.0,
                    (false, true) => only_b += 1.0,
                    _ if da * db > 0.0 => concordant += 1.0,
                    _ => discordant += 1.0,
                }
            }
        }
        (concordant - discordant) / ((concordant + discordant + only_b) * (concordant + discordant + only_a)).sqrt()
    }

    #[test]
    fn ties_share_their_mean_rank() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
    }

    /// Values from scipy 1.17.1 (`spearmanr`, `kendalltau`) on the same vectors, ties included.
    #[test]
    fn agree_with_scipy_on_tied_data() {
        let a = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 6.0];
        let b = [2.0, 1.0, 3.0, 3.0, 5.0, 4.0, 6.0, 6.0];
        assert!(
            (spearman(&a, &b) - 0.8902439024390245).abs() < 1e-12,
            "{}",
            spearman(&a, &b)
        );
        assert!(
            (kendall_tau_b(&a, &b) - 0.7692307692307694).abs() < 1e-12,
            "{}",
            kendall_tau_b(&a, &b)
        );
    }

    /// -0 and +0 are one value, as they are to scipy.
    #[test]
    fn negative_zero_ties_with_zero() {
        let a = [-0.0, 0.0, 1.0, -0.0];
        let b = [2.0, 1.0, 3.0, 0.0];
        assert_eq!(kendall_tau_b(&a, &b), tau_b_by_pairs(&a, &b));
        assert_eq!(average_ranks(&a), [2.0, 2.0, 4.0, 2.0]);
    }

    #[test]
    fn same_and_reversed_orders() {
        let a: Vec<f64> = (0..50).map(|i| (i as f64).powi(3)).collect();
        let reversed: Vec<f64> = a.iter().map(|x| -x).collect();
        assert!((spearman(&a, &a) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &reversed) + 1.0).abs() < 1e-12);
        assert!((kendall_tau_b(&a, &reversed) + 1.0).abs() < 1e-12);
        assert_eq!(top_precision(&a, &a, 5), 1.0);
        assert_eq!(top_precision(&a, &reversed, 5), 0.0);
        assert!(pearson(&a, &[1.0; 50]).is_nan(), "no spread, no correlation");
    }

    #[test]
    fn spearman_intervals_narrow_with_more_items() {
        let (low, high) = spearman_interval(0.8, 100).unwrap();
        assert!(low < 0.8 && 0.8 < high && high < 1.0, "{low} {high}");
        let (low_more, high_more) = spearman_interval(0.8, 10_000).unwrap();
        assert!(high_more - low_more < (high - low) / 5.0);
        assert!(spearman_interval(0.8, 3).is_none());
    }

    #[test]
    fn top_precision_counts_the_shared_best() {
        let estimate = [5.0, 4.0, 3.0, 2.0, 1.0];
        let truth = [5.0, 1.0, 4.0, 3.0, 2.0];
        assert_eq!(top_precision(&estimate, &truth, 2), 0.5);
        let negate = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
        assert_eq!(top_precision(&negate(&estimate), &negate(&truth), 2), 0.5);
    }

    proptest! {
        /// The O(n log n) tau-b equals the pairwise definition, with many ties on both sides,
        /// -0 among them.
        #[test]
        fn kendall_matches_its_definition(
            pairs in prop::collection::vec(((-3i8..3, any::<bool>()), (-3i8..3, any::<bool>())), 2..60)
        ) {
            // Negated or not: 0 then comes as -0 or +0.
            let value = |(x, negated): (i8, bool)| if negated { -f64::from(x) } else { f64::from(x) };
            let a: Vec<f64> = pairs.iter().map(|p| value(p.0)).collect();
            let b: Vec<f64> = pairs.iter().map(|p| value(p.1)).collect();
            let (fast, slow) = (kendall_tau_b(&a, &b), tau_b_by_pairs(&a, &b));
            prop_assert!(fast == slow || (fast - slow).abs() < 1e-12 || (fast.is_nan() && slow.is_nan()),
                "{} vs {}", fast, slow);
        }
    }
}
