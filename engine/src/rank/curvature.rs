//! Standard errors from the curvature of the log-posterior at the fit.
//!
//! The negative Hessian in the scores is `H = sum over stages (diag(pi) - pi pi^T) + lambda I`,
//! with `pi` the fitted choice probabilities of the stage. Standard errors are the square roots
//! of `diag(H^-1)`. Up to [`EXACT_MAX_ITEMS`] items we invert `H` exactly (dense Cholesky);
//! above that, `1 / H_ii` is used, which ignores the covariance between items and so slightly
//! understates the error, but costs O(observations) like the fit itself.

use super::fit::{key_index, NUM_KEYS};
use super::observations::Observations;
use super::pass::Pass;

/// The largest item count for which the exact (dense, O(N^3)) inverse is computed.
pub const EXACT_MAX_ITEMS: usize = 500;

/// Exact standard errors for up to [`EXACT_MAX_ITEMS`] items; None above that, or when `H` is
/// not positive definite.
pub(crate) fn exact_standard_errors(
    obs: &Observations,
    theta: &[f64],
    beta: &[f64; NUM_KEYS],
    lambda: f64,
) -> Option<Vec<f64>> {
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
    let variances = exact_variances(&mut h, n, lambda)?;
    Some(variances.into_iter().map(f64::sqrt).collect())
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
/// is singular along the all-ones direction, the shift the likelihood cannot see).
fn exact_variances(h: &mut [f64], n: usize, lambda: f64) -> Option<Vec<f64>> {
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
        // Solve L y = e_i; entries before i are zero.
        for r in i..n {
            let mut sum = column[r];
            for k in i..r {
                sum -= h[r * n + k] * column[k];
            }
            column[r] = sum / h[r * n + r];
        }
        variances[i] = column[i..].iter().map(|y| y * y).sum::<f64>() - gauge;
    }
    variances.iter().all(|v| v.is_finite() && *v > 0.0).then_some(variances)
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
