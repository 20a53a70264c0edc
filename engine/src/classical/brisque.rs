//! BRISQUE (Mittal, Moorthy and Bovik, "No-Reference Image Quality Assessment in the Spatial
//! Domain", IEEE TIP 2012), reproducing the Python package `brisque` 0.2.0 step by step, because
//! our rankings must agree with the scores people get from it.
//!
//! 1. Grey = 0.2125 R + 0.7154 G + 0.0721 B on [0, 1] (`skimage.color.rgb2gray`).
//! 2. MSCN coefficients with C = 1/255 ([`super::mscn`]), rounded as scipy rounds them.
//! 3. AGGD fits of the MSCN map and of its products with the right, lower, lower-right and
//!    (lower-left, upper-right) neighbours: 2 + 4 × 4 = 18 features.
//! 4. The same on a half-size grey image (OpenCV bicubic, [`super::resize`]): 36 features.
//! 5. Min/max scaling and the LIVE-trained SVR ([`super::svm`]).
//!
//! The result is the package's number: about 0 for pristine photos, larger when worse.

use image::RgbImage;

use super::aggd::{fit_brisque, Moments};
use super::mscn::mscn_brisque;
use super::plane::Plane;
use super::resize::opencv_cubic_half;
use super::svm::{Svr, NUM_FEATURES};
use super::ClassicalError;

/// `skimage.color.rgb2gray` weights (ITU-R BT.709 luma).
const GREY_WEIGHTS: [f64; 3] = [0.2125, 0.7154, 0.0721];

/// Grey on [0, 1] with `rgb2gray`'s rounding: skimage scales by `* (1/255)`, and numpy's
/// matrix-vector product (OpenBLAS on x86-64 with FMA, i.e. any current CPU) evaluates
/// `fma(b, wb, fma(r, wr, g * wg))`. Like the MSCN filter, this decides signs in flat areas.
fn grey(rgb: &RgbImage) -> Plane {
    const SCALE: f64 = 1.0 / 255.0;
    let [wr, wg, wb] = GREY_WEIGHTS;
    Plane::from_rgb(rgb, |[r, g, b]| {
        let (r, g, b) = (r * SCALE, g * SCALE, b * SCALE);
        b.mul_add(wb, r.mul_add(wr, g * wg))
    })
}

/// Each side must be at least this long so that the half-size scale still has pairs of pixels.
const MIN_SIDE: usize = 4;

/// The 18 features of one scale, in the package's order: MSCN (α, σ²), then for the horizontal,
/// vertical, main-diagonal and secondary-diagonal products (α, mean, σ_l², σ_r²).
fn scale_features(grey: &Plane) -> [f64; 18] {
    let m = mscn_brisque(grey);
    // Every sample; products with the right, lower and lower-right neighbours, and of the
    // lower-left and upper-right pair, each over the samples where that neighbour exists. One
    // loop feeds all five, so their sums form independent dependency chains the CPU overlaps.
    let [mut all, mut right, mut down, mut diag, mut anti] = [Moments::default(); 5];
    for y in 0..m.height {
        let row = m.row(y);
        let (&last, _) = row.split_last().expect("planes are at least 2 wide");
        if y + 1 < m.height {
            let below = m.row(y + 1);
            for (((&c, &r), &b), &br) in row.iter().zip(&row[1..]).zip(below).zip(&below[1..]) {
                all.push(c);
                right.push(c * r);
                down.push(c * b);
                diag.push(c * br);
                anti.push(b * r);
            }
            down.push(last * below[below.len() - 1]);
        } else {
            for (&c, &r) in row.iter().zip(&row[1..]) {
                all.push(c);
                right.push(c * r);
            }
        }
        all.push(last);
    }
    let moments = [all, right, down, diag, anti];
    let mut out = [0.0; 18];
    let fit = fit_brisque(&moments[0]);
    out[0] = fit.alpha;
    out[1] = (fit.sigma_left.powi(2) + fit.sigma_right.powi(2)) / 2.0;
    for (k, m) in moments[1..].iter().enumerate() {
        let fit = fit_brisque(m);
        out[2 + 4 * k..6 + 4 * k].copy_from_slice(&[
            fit.alpha,
            fit.mean,
            fit.sigma_left.powi(2),
            fit.sigma_right.powi(2),
        ]);
    }
    out
}

/// The 36 BRISQUE features of an image: 18 at full size, then 18 at half size.
fn brisque_features(rgb: &RgbImage) -> [f64; NUM_FEATURES] {
    let grey = grey(rgb);
    let full = scale_features(&grey);
    let half = scale_features(&opencv_cubic_half(&grey));
    std::array::from_fn(|i| if i < 18 { full[i] } else { half[i - 18] })
}

/// The BRISQUE score exactly as `brisque.BRISQUE().score(rgb)` prints it: about 0 for pristine
/// photos, larger when worse. NaN when the image cannot be judged (a side under 4 pixels).
pub fn brisque_score(rgb: &RgbImage) -> f64 {
    try_brisque_score(rgb).unwrap_or(f64::NAN)
}

/// [`brisque_score`], with images the metric cannot judge reported as errors.
pub(crate) fn try_brisque_score(rgb: &RgbImage) -> Result<f64, ClassicalError> {
    ClassicalError::check_size(rgb, MIN_SIDE)?;
    let score = Svr::live().predict(&brisque_features(rgb));
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
    fn noise_scores_worse_than_a_smooth_gradient_with_texture() {
        // A smooth scene with mild texture versus the same scene with heavy noise.
        let clean = RgbImage::from_fn(64, 48, |x, y| {
            let v = (x * 3 + y * 2 + ((x * 7 + y * 13) % 5)) as u8;
            image::Rgb([v, v / 2 + 40, 200 - v / 2])
        });
        let mut state = 12345_u32;
        let noisy = RgbImage::from_fn(64, 48, |x, y| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let n = (state >> 24) as i32 - 128;
            let p = clean.get_pixel(x, y).0.map(|c| (c as i32 + n / 2).clamp(0, 255) as u8);
            image::Rgb(p)
        });
        assert!(brisque_score(&noisy) > brisque_score(&clean));
    }

    #[test]
    fn tiny_images_are_refused() {
        let tiny = RgbImage::new(3, 40);
        assert!(matches!(try_brisque_score(&tiny), Err(ClassicalError::TooSmall { .. })));
    }
}
