//! Fits of the asymmetric generalised Gaussian distribution (AGGD) to MSCN coefficients and
//! their neighbour products, by the moment matching both references use.
//!
//! The shape α solves φ(α) = R̂, where φ(α) = Γ(2/α)² / (Γ(1/α) Γ(3/α)) and R̂ is the ratio
//! E[|x|]² / E[x²] corrected for the left/right asymmetry. The two references solve it
//! differently, and the difference is visible in the features, so each is reproduced:
//! `brisque` 0.2.0 finds the root with `scipy.optimize.root` (we bisect to full precision),
//! scikit-video picks the nearest value on a grid α ∈ {0.2, 0.201, ..., 9.999}.

use std::sync::OnceLock;

use super::special::{gamma_ratio, ln_gamma};

/// Sums over one set of coefficients, gathered in a single pass without storing them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Moments {
    count: usize,
    sum_abs: f64,
    sum_sq: f64,
    left_count: usize,
    left_sum_sq: f64,
}

impl Moments {
    /// Add one coefficient. Branch-free: signs of MSCN products are close to random, so a branch
    /// here would be mispredicted about half the time.
    #[inline]
    pub fn push(&mut self, x: f64) {
        let sq = x * x;
        let left = x < 0.0;
        self.count += 1;
        self.sum_abs += x.abs();
        self.sum_sq += sq;
        self.left_count += usize::from(left);
        self.left_sum_sq += if left { sq } else { 0.0 };
    }

    /// Root mean square of the negative values and of the non-negative ones.
    fn left_right_rms(&self) -> (f64, f64) {
        let right_count = self.count - self.left_count;
        let right_sum_sq = self.sum_sq - self.left_sum_sq;
        (
            (self.left_sum_sq / self.left_count as f64).sqrt(),
            (right_sum_sq / right_count as f64).sqrt(),
        )
    }

    /// R̂: the generalised Gaussian ratio corrected for asymmetry γ = rms_left / rms_right.
    fn r_hat_norm(&self, gamma: f64) -> f64 {
        let n = self.count as f64;
        let mean_abs = self.sum_abs / n;
        let r_hat = mean_abs * mean_abs / (self.sum_sq / n);
        r_hat * (gamma.powi(3) + 1.0) * (gamma + 1.0) / (gamma * gamma + 1.0).powi(2)
    }
}

/// φ(α) = Γ(2/α)² / (Γ(1/α) Γ(3/α)); increasing from 0 towards 3/4.
fn phi(alpha: f64) -> f64 {
    (2.0 * ln_gamma(2.0 / alpha) - ln_gamma(1.0 / alpha) - ln_gamma(3.0 / alpha)).exp()
}

/// AGGD parameters as `brisque` 0.2.0 reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BrisqueFit {
    pub alpha: f64,
    pub mean: f64,
    pub sigma_left: f64,
    pub sigma_right: f64,
}

/// Solve φ(α) = r by bisection on ln α. `brisque` uses scipy's hybrid root finder from α = 0.2,
/// which converges to the same unique root; outside φ's range we return the bracket's end.
fn solve_alpha(r: f64) -> f64 {
    let (mut lo, mut hi) = (0.01_f64.ln(), 1000.0_f64.ln());
    // 52 halvings of a bracket 11.5 wide leave an error below 1e-14 in α.
    for _ in 0..52 {
        let mid = 0.5 * (lo + hi);
        if phi(mid.exp()) < r {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi)).exp()
}

/// The fit of `brisque` 0.2.0: root-solved α, σ_l and σ_r as root mean squares, and the mean.
pub(crate) fn fit_brisque(m: &Moments) -> BrisqueFit {
    let (sigma_left, sigma_right) = m.left_right_rms();
    let alpha = solve_alpha(m.r_hat_norm(sigma_left / sigma_right));
    let mean = (sigma_right - sigma_left)
        * gamma_ratio(1.0 / alpha, 3.0 / alpha).sqrt()
        * gamma_ratio(2.0 / alpha, 1.0 / alpha);
    BrisqueFit {
        alpha,
        mean,
        sigma_left,
        sigma_right,
    }
}

/// AGGD parameters as scikit-video's `aggd_features` reports them (scales, not variances).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NiqeFit {
    pub alpha: f64,
    pub mean: f64,
    pub beta_left: f64,
    pub beta_right: f64,
}

/// First and step of scikit-video's α grid, `np.arange(0.2, 10, 0.001)`.
const GRID_START: f64 = 0.2;
const GRID_STEP: f64 = 0.001;
const GRID_LEN: usize = 9800;

/// φ on the grid, increasing.
fn phi_grid() -> &'static [f64] {
    static GRID: OnceLock<Vec<f64>> = OnceLock::new();
    GRID.get_or_init(|| (0..GRID_LEN).map(|i| phi(GRID_START + i as f64 * GRID_STEP)).collect())
}

/// Index of the grid value nearest `r` (the first, on a tie), as `np.argmin((grid - r)**2)`.
fn nearest_on_grid(r: f64) -> usize {
    let grid = phi_grid();
    let above = grid.partition_point(|&v| v < r);
    match above {
        0 => 0,
        i if i == grid.len() => i - 1,
        i if (grid[i - 1] - r).abs() <= (grid[i] - r).abs() => i - 1,
        i => i,
    }
}

/// The fit of scikit-video's `aggd_features`: grid α, β_l and β_r, and the mean.
pub(crate) fn fit_niqe(m: &Moments) -> NiqeFit {
    let (rms_left, rms_right) = m.left_right_rms();
    let alpha = GRID_START + nearest_on_grid(m.r_hat_norm(rms_left / rms_right)) as f64 * GRID_STEP;
    let ratio = gamma_ratio(1.0 / alpha, 3.0 / alpha).sqrt();
    let (beta_left, beta_right) = (ratio * rms_left, ratio * rms_right);
    let mean = (beta_right - beta_left) * gamma_ratio(2.0 / alpha, 1.0 / alpha);
    NiqeFit {
        alpha,
        mean,
        beta_left,
        beta_right,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Roots printed by `scipy.optimize.root(lambda a: phi(a) - r, [0.2])`.
    #[test]
    fn alpha_matches_scipy_roots() {
        for (r, alpha) in [
            (0.3, 0.5),
            (0.5, 1.0),
            (0.6, 1.593_943_311_180_315),
            (0.74, 9.691_970_797_966_82),
        ] {
            assert!((solve_alpha(r) - alpha).abs() < 1e-9 * alpha, "r = {r}");
        }
    }

    #[test]
    fn gaussian_samples_fit_alpha_two() {
        // Box-Muller samples of a unit Gaussian: α ≈ 2, no skew, σ ≈ 1, and both solvers agree.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut m = Moments::default();
        for _ in 0..200_000 {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            m.push((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos());
        }
        let fit = fit_brisque(&m);
        assert!((fit.alpha - 2.0).abs() < 0.03, "{fit:?}");
        assert!(fit.mean.abs() < 0.01 && (fit.sigma_left - 1.0).abs() < 0.01, "{fit:?}");
        let grid = fit_niqe(&m);
        assert!((grid.alpha - fit.alpha).abs() <= 0.0006, "{grid:?}");
    }
}
