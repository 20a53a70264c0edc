//! The four-parameter logistic that image-quality work fits from a model's scores to the human
//! opinion scores before it reports PLCC (VQEG FR-TV Phase II):
//!
//! `f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))`
//!
//! A ranking's scores (Plackett-Luce log-strengths) and MOS are on different scales, and MOS
//! saturate at both ends, so a linear correlation of the raw scores understates agreement;
//! PLCC after this fit is the figure papers print beside SRCC. The fit is Levenberg-Marquardt
//! from the start that the common scipy code uses (`b1 = max y`, `b2 = min y`, `b3 = mean x`,
//! `b4 = std x`), on standardised `x` and `y` so that one damping suits every scale. It agrees
//! with scipy's `curve_fit` (`scripts/plcc_reference.py`).

use crate::agreement::pearson;

/// The fitted logistic, in the units of the `x` and `y` it was fitted to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Logistic {
    /// The value approached as `x` grows (`b1`) and as it falls (`b2`).
    pub high: f64,
    pub low: f64,
    /// The midpoint (`b3`) and the width (`|b4|`) of the rise.
    pub centre: f64,
    pub width: f64,
}

impl Logistic {
    /// The curve's value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.low + (self.high - self.low) / (1.0 + (-(x - self.centre) / self.width).exp())
    }
}

/// Iterations after which the fit stops, converged or not; under a dozen is typical.
const MAX_ITERATIONS: usize = 200;

/// The fit stops once a step lowers the squared error by less than this share of it. Where the
/// truth is a straight line of the scores plus noise, the best logistic lies at an infinite
/// width, and each step only creeps towards it: in `scripts/bench_eval.py`'s data (10,000
/// images) by about 1e-8 of the error a step, and 500 steps more raised PLCC by only 4e-6.
/// scipy stops such a fit by a like rule (its `ftol`). Where the best fit is finite, as with
/// MOS that saturate, the PLCC agrees with scipy's to 1e-11.
const RELATIVE_TOLERANCE: f64 = 1e-7;

/// Fit the logistic to the pairs `(x[i], y[i])` by least squares. `None` under 5 pairs (4
/// parameters need more), or when either side has no spread.
pub fn fit(x: &[f64], y: &[f64]) -> Option<Logistic> {
    assert_eq!(x.len(), y.len(), "logistic fit: sides of different lengths");
    if x.len() < 5 {
        return None;
    }
    let (x_scale, y_scale) = (Scale::of(x)?, Scale::of(y)?);
    let xs: Vec<f64> = x.iter().map(|&v| x_scale.to(v)).collect();
    let ys: Vec<f64> = y.iter().map(|&v| y_scale.to(v)).collect();
    let max_y = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min_y = ys.iter().copied().fold(f64::INFINITY, f64::min);
    // Standardised: the mean of x is 0 and its standard deviation 1.
    let mut params = [max_y, min_y, 0.0, 1.0];
    let mut cost = squared_error(&params, &xs, &ys);
    let mut damping = 1e-3;
    for _ in 0..MAX_ITERATIONS {
        let (normal, gradient) = normal_equations(&params, &xs, &ys);
        let mut improved = false;
        // Raise the damping until a step lowers the cost (or the step is too small to matter).
        while damping < 1e16 {
            let mut damped = normal;
            for (i, row) in damped.iter_mut().enumerate() {
                row[i] += damping * normal[i][i].max(1e-12);
            }
            let Some(step) = solve(damped, gradient) else {
                damping *= 10.0;
                continue;
            };
            let trial: [f64; 4] = std::array::from_fn(|i| params[i] + step[i]);
            let trial_cost = squared_error(&trial, &xs, &ys);
            if trial_cost.is_finite() && trial_cost < cost {
                let relative_drop = (cost - trial_cost) / cost.max(f64::MIN_POSITIVE);
                params = trial;
                cost = trial_cost;
                damping = (damping / 10.0).max(1e-12);
                improved = relative_drop > RELATIVE_TOLERANCE;
                break;
            }
            damping *= 10.0;
        }
        if !improved {
            break;
        }
    }
    let [high, low, centre, width] = params;
    Some(Logistic {
        high: y_scale.from(high),
        low: y_scale.from(low),
        centre: x_scale.from(centre),
        width: width.abs() * x_scale.spread,
    })
}

/// PLCC after the logistic fit, signed as the fitted curve runs: negative when it falls, when
/// the scores run against the truth (the unsigned figure would call a reversed ranking good).
/// `None` where [`fit`] is.
pub fn plcc(x: &[f64], y: &[f64]) -> Option<f64> {
    let curve = fit(x, y)?;
    let fitted: Vec<f64> = x.iter().map(|&v| curve.at(v)).collect();
    let r = pearson(&fitted, y);
    Some(if curve.high < curve.low { -r } else { r })
}

/// Standardisation of one side: `(v - mean) / standard deviation`.
#[derive(Debug, Clone, Copy)]
struct Scale {
    mean: f64,
    spread: f64,
}

impl Scale {
    /// `None` for no spread (or a non-number in the values).
    fn of(values: &[f64]) -> Option<Self> {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let spread = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        (spread > 0.0 && spread.is_finite()).then_some(Self { mean, spread })
    }

    fn to(self, v: f64) -> f64 {
        (v - self.mean) / self.spread
    }

    fn from(self, v: f64) -> f64 {
        v * self.spread + self.mean
    }
}

/// The logistic's value at `x` and its derivatives by `[b1, b2, b3, b4]`.
fn value_and_gradient(params: &[f64; 4], x: f64) -> (f64, [f64; 4]) {
    let [b1, b2, b3, b4] = *params;
    let width = b4.abs().max(1e-300);
    let z = (x - b3) / width;
    let g = 1.0 / (1.0 + (-z).exp());
    let slope = (b1 - b2) * g * (1.0 - g);
    let gradient = [g, 1.0 - g, -slope / width, -slope * z / width * b4.signum()];
    (b2 + (b1 - b2) * g, gradient)
}

fn squared_error(params: &[f64; 4], xs: &[f64], ys: &[f64]) -> f64 {
    xs.iter()
        .zip(ys)
        .map(|(&x, &y)| (y - value_and_gradient(params, x).0).powi(2))
        .sum()
}

/// `JᵀJ` and `Jᵀr` of the residuals `r = y - f(x)`.
fn normal_equations(params: &[f64; 4], xs: &[f64], ys: &[f64]) -> ([[f64; 4]; 4], [f64; 4]) {
    let mut normal = [[0.0; 4]; 4];
    let mut gradient = [0.0; 4];
    for (&x, &y) in xs.iter().zip(ys) {
        let (value, d) = value_and_gradient(params, x);
        let residual = y - value;
        for i in 0..4 {
            gradient[i] += d[i] * residual;
            for j in 0..4 {
                normal[i][j] += d[i] * d[j];
            }
        }
    }
    (normal, gradient)
}

/// Solve the 4x4 system `a s = b` by Gaussian elimination with partial pivoting; `None` when
/// it is singular.
fn solve(mut a: [[f64; 4]; 4], mut b: [f64; 4]) -> Option<[f64; 4]> {
    for col in 0..4 {
        let pivot = (col..4).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 || !a[pivot][col].is_finite() {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..4 {
            let factor = a[row][col] / pivot_row[col];
            for (value, above) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *value -= factor * above;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut s = [0.0; 4];
    for row in (0..4).rev() {
        let rest: f64 = (row + 1..4).map(|k| a[row][k] * s[k]).sum();
        s[row] = (b[row] - rest) / a[row][row];
    }
    s.iter().all(|v| v.is_finite()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        x: Vec<f64>,
        y: Vec<f64>,
        params: [f64; 4],
        plcc: f64,
        plcc_linear: f64,
    }

    fn reference() -> Vec<Case> {
        #[derive(serde::Deserialize)]
        struct File {
            cases: Vec<Case>,
        }
        let text = include_str!("../tests/data/plcc_reference.json");
        serde_json::from_str::<File>(text).expect("reference JSON").cases
    }

    /// The same curve and PLCC as scipy's `curve_fit` and `pearsonr` on the same data, to 1e-9
    /// in the PLCC and 1e-4 (relative) in the parameters; signed as the curve runs. (Measured:
    /// 1e-11 and 3e-5; the parameters move further than the PLCC near the best fit.)
    #[test]
    fn agrees_with_scipy() {
        let cases = reference();
        assert_eq!(cases.len(), 3);
        for case in cases {
            let curve = fit(&case.x, &case.y).unwrap();
            let [b1, b2, b3, b4] = case.params;
            let mut largest_gap: f64 = 0.0;
            for (ours, theirs, what) in [
                (curve.high, b1, "b1"),
                (curve.low, b2, "b2"),
                (curve.centre, b3, "b3"),
                (curve.width, b4.abs(), "|b4|"),
            ] {
                let scale = theirs.abs().max(1.0);
                largest_gap = largest_gap.max((ours - theirs).abs() / scale);
                assert!(
                    (ours - theirs).abs() < 1e-4 * scale,
                    "{}: {what} {ours} against scipy's {theirs}",
                    case.name
                );
            }
            let ours = plcc(&case.x, &case.y).unwrap();
            let signed = if b1 < b2 { -case.plcc } else { case.plcc };
            assert!(
                (ours - signed).abs() < 1e-9,
                "{}: plcc {ours} against {signed}",
                case.name
            );
            eprintln!(
                "{}: plcc {ours:.6}, {:.1e} from scipy's; parameters within {largest_gap:.1e} (relative)",
                case.name,
                (ours - signed).abs()
            );
            assert!((pearson(&case.x, &case.y) - case.plcc_linear).abs() < 1e-12);
        }
    }

    #[test]
    fn a_logistic_relation_is_recovered_exactly() {
        let truth = Logistic {
            high: 90.0,
            low: 10.0,
            centre: 1.5,
            width: 0.7,
        };
        let x: Vec<f64> = (0..60).map(|i| -3.0 + 0.1 * i as f64).collect();
        let y: Vec<f64> = x.iter().map(|&v| truth.at(v)).collect();
        let curve = fit(&x, &y).unwrap();
        for (ours, theirs) in [
            (curve.high, truth.high),
            (curve.low, truth.low),
            (curve.centre, truth.centre),
            (curve.width, truth.width),
        ] {
            assert!((ours - theirs).abs() < 1e-6, "{curve:?}");
        }
        assert!((plcc(&x, &y).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn too_few_pairs_or_no_spread_give_none() {
        assert_eq!(fit(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 3.0, 5.0]), None);
        assert_eq!(fit(&[1.0; 6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), None);
        assert_eq!(plcc(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2.0; 6]), None);
    }
}
