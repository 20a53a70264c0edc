//! Standard errors from the curvature of the log-posterior at the fit.
//!
//! The negative Hessian in the scores is `H = sum over stages (diag(pi) - pi pi^T) + lambda I`,
//! with `pi` the fitted choice probabilities of the stage. Standard errors are the square roots
//! of `diag(H^-1)`. Up to [`EXACT_MAX_ITEMS`] items we invert `H` exactly (dense Cholesky);
//! above that, `1 / H_ii` is used, which ignores the covariance between items and so slightly
//! understates the error, but costs O(observations) like the fit itself.
//!
//! The exact inverse also gives each score's error relative to the mean score. Comparisons say
//! nothing about the overall level of the scores; only the prior sets it, loosely, and that
//! shared uncertainty is part of every item's absolute error: with the default prior it is
//! `1 / (lambda N) = 0.05` in variance at N = 200, a third of a well-compared item's. It cannot
//! change the order, so the cut probabilities of top-k and threshold jobs leave it out.

use super::fit::{key_index, NUM_KEYS};
use super::observations::Observations;
use super::pass::Pass;

/// The largest item count for which the exact (dense, O(N^3)) inverse is computed.
pub const EXACT_MAX_ITEMS: usize = 500;

/// Each item's standard error, absolute and relative to the mean score.
pub(crate) struct StandardErrors {
    pub absolute: Vec<f64>,
    pub relative: Vec<f64>,
}

/// Exact standard errors for up to [`EXACT_MAX_ITEMS`] items; None above that, or when `H` is
/// not positive definite.
pub(crate) fn exact_standard_errors(
    obs: &Observations,
    theta: &[f64],
    beta: &[f64; NUM_KEYS],
    lambda: f64,
) -> Option<StandardErrors> {
    let n = theta.len();
    if n > EXACT_MAX_ITEMS {
        return None;
    }
    let mut h = vec![0.0f64; n * n];
    let mut pi = Vec::with_capacity(4);
    for stage in obs.stages() {
        pi.clear();
        pi.extend(
            stage
                .items
                .iter()
                .zip(stage.slots)
                .map(|(&i, &s)| (theta[i as usize] + beta[key_index(stage.group_size, s)]).exp()),
        );
        let total: f64 = pi.iter().sum();
        pi.iter_mut().for_each(|p| *p /= total);
        let mass: f64 = stage.probs.iter().map(|&p| f64::from(p)).sum();
        for (a, &ia) in stage.items.iter().enumerate() {
            for (b, &ib) in stage.items.iter().enumerate() {
                let delta = if a == b { pi[a] } else { 0.0 };
                h[ia as usize * n + ib as usize] += mass * (delta - pi[a] * pi[b]);
            }
        }
    }
    let (absolute, relative) = exact_variances(&mut h, n, lambda)?;
    let sqrt = |v: Vec<f64>| v.into_iter().map(f64::sqrt).collect();
    Some(StandardErrors {
        absolute: sqrt(absolute),
        relative: sqrt(relative),
    })
}

/// `1 / sqrt(H_ii)`, from a pass at the fit. An item's choice probability in a stage is its
/// strength times that stage's `e^beta / D`, so `H_ii = lambda + sum (pi - pi^2)` is
/// `lambda + w_i * denominator_i - w_i^2 * square_i`.
pub(crate) fn diagonal_standard_errors(strength: &[f64], pass: &Pass, lambda: f64) -> Vec<f64> {
    strength
        .iter()
        .zip(&pass.denominators)
        .zip(&pass.squares)
        .map(|((&w, &c), &q)| {
            let h = lambda + (w * c - w * w * q).max(0.0);
            if h > 0.0 {
                1.0 / h.sqrt()
            } else {
                f64::INFINITY
            }
        })
        .collect()
}

/// `diag(H^-1)`, or of the pseudo-inverse on mean-zero scores when there is no prior (then `H`
/// is singular along the all-ones direction, the shift the likelihood cannot see); and the
/// variances of each score minus the mean score, `Var(x_i - mean x)`.
fn exact_variances(h: &mut [f64], n: usize, lambda: f64) -> Option<(Vec<f64>, Vec<f64>)> {
    for i in 0..n {
        h[i * n + i] += lambda;
    }
    let gauge = if lambda == 0.0 { 1.0 / n as f64 } else { 0.0 };
    if gauge > 0.0 {
        h.iter_mut().for_each(|x| *x += gauge);
    }
    cholesky_in_place(h, n)?;
    // H^-1 = L^-T L^-1, so (H^-1)_ii = |L^-1 e_i|^2: one forward substitution per item.
    let mut variances = vec![0.0; n];
    let mut column = vec![0.0; n];
    for i in 0..n {
        column.iter_mut().for_each(|x| *x = 0.0);
        column[i] = 1.0;
        forward_substitute(h, n, &mut column, i);
        variances[i] = column[i..].iter().map(|y| y * y).sum::<f64>() - gauge;
    }
    if !variances.iter().all(|v| v.is_finite() && *v > 0.0) {
        return None;
    }
    let relative = if gauge > 0.0 {
        // The pseudo-inverse is already that of mean-zero scores.
        variances.clone()
    } else {
        relative_variances(h, n, &variances)
    };
    Some((variances, relative))
}

/// `Var(x_i - mean x) = (H^-1)_ii - 2 (H^-1 1)_i / n + 1^T H^-1 1 / n^2`, given the Cholesky
/// factor `L` of `H` in the lower triangle of `l`; one more solve, `L L^T y = 1`.
fn relative_variances(l: &[f64], n: usize, variances: &[f64]) -> Vec<f64> {
    let mut y = vec![1.0; n];
    forward_substitute(l, n, &mut y, 0);
    for r in (0..n).rev() {
        let sum: f64 = (r + 1..n).map(|k| l[k * n + r] * y[k]).sum();
        y[r] = (y[r] - sum) / l[r * n + r];
    }
    let nf = n as f64;
    let level = y.iter().sum::<f64>() / (nf * nf);
    variances
        .iter()
        .zip(&y)
        .map(|(v, yi)| (v - 2.0 * yi / nf + level).max(f64::MIN_POSITIVE))
        .collect()
}

/// Solve `L y = b` in place, `L` in the lower triangle of `l`, for a `b` whose entries before
/// `from` are zero (so are the solution's).
fn forward_substitute(l: &[f64], n: usize, b: &mut [f64], from: usize) {
    for r in from..n {
        let mut sum = b[r];
        for k in from..r {
            sum -= l[r * n + k] * b[k];
        }
        b[r] = sum / l[r * n + r];
    }
}

/// Lower-triangular Cholesky factor written over the lower triangle of `a`. None if `a` is not
/// positive definite.
fn cholesky_in_place(a: &mut [f64], n: usize) -> Option<()> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse by Gauss-Jordan elimination, independent of the Cholesky path.
    fn inverse(a: &[f64], n: usize) -> Vec<f64> {
        let mut m = a.to_vec();
        let mut inv: Vec<f64> = (0..n * n).map(|k| f64::from(u8::from(k / n == k % n))).collect();
        for c in 0..n {
            let p = m[c * n + c];
            for k in 0..n {
                m[c * n + k] /= p;
                inv[c * n + k] /= p;
            }
            for r in (0..n).filter(|&r| r != c) {
                let f = m[r * n + c];
                for k in 0..n {
                    m[r * n + k] -= f * m[c * n + k];
                    inv[r * n + k] -= f * inv[c * n + k];
                }
            }
        }
        inv
    }

    #[test]
    fn relative_variances_are_those_of_the_centred_scores() {
        // A comparison Laplacian of a path 0-1-2-3 plus a heavy pair 3-4, and a weak prior.
        let n = 5;
        let lambda = 0.1;
        let mut h = vec![0.0; n * n];
        for (a, b, w) in [(0, 1, 0.5), (1, 2, 0.25), (2, 3, 0.75), (3, 4, 3.0)] {
            h[a * n + a] += w;
            h[b * n + b] += w;
            h[a * n + b] -= w;
            h[b * n + a] -= w;
        }
        let mut with_prior = h.clone();
        (0..n).for_each(|i| with_prior[i * n + i] += lambda);
        let sigma = inverse(&with_prior, n);
        let (absolute, relative) = exact_variances(&mut h, n, lambda).unwrap();
        let nf = n as f64;
        for i in 0..n {
            let row_mean = (0..n).map(|j| sigma[i * n + j]).sum::<f64>() / nf;
            let all_mean = sigma.iter().sum::<f64>() / (nf * nf);
            let centred = sigma[i * n + i] - 2.0 * row_mean + all_mean;
            assert!((absolute[i] - sigma[i * n + i]).abs() < 1e-9, "item {i}");
            assert!(
                (relative[i] - centred).abs() < 1e-9,
                "item {i}: {} vs {centred}",
                relative[i]
            );
            // The shared level (variance 1 / (lambda n) = 2) is most of the absolute variance.
            assert!(relative[i] < absolute[i] - 1.0, "item {i}");
        }
    }
}
