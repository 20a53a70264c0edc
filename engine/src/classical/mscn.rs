//! Mean-subtracted contrast-normalised (MSCN) coefficients, the common input of BRISQUE and NIQE.
//!
//! Each sample is replaced by `(I - μ) / (σ + C)`, where μ and σ are the local mean and standard
//! deviation under a 7x7 Gaussian window (σ = 7/6), with zero padding outside the image. Natural
//! images give MSCN coefficients close to a unit Gaussian; distortions bend that distribution in
//! characteristic ways, which the AGGD fits in [`super::aggd`] measure.
//!
//! Two filters compute μ and σ:
//! - [`mscn`] (NIQE): two separable 1-D passes, as scikit-video's `correlate1d`.
//! - [`mscn_brisque`] (BRISQUE): the 2-D window applied with the same rounding as
//!   `scipy.signal.convolve2d` in `brisque` 0.2.0. In flat areas (clipped highlights, JPEG
//!   blocks, pixelation) `I - μ` is rounding noise, and its sign decides whether a sample counts
//!   as left or right in the AGGD fit. Those counts move BRISQUE by up to half a point, so we
//!   reproduce scipy's arithmetic bit for bit rather than only the mathematics.

use super::plane::Plane;

/// Half-width of the 7-tap window.
const RADIUS: usize = 3;
/// Standard deviation of the window, in pixels.
const WINDOW_SIGMA: f64 = 7.0 / 6.0;

/// The normalised 1-D Gaussian window; its outer product is the references' 2-D window.
fn gaussian_window() -> [f64; 2 * RADIUS + 1] {
    let mut w = [0.0; 2 * RADIUS + 1];
    for (i, wi) in w.iter_mut().enumerate() {
        let d = i as f64 - RADIUS as f64;
        *wi = (-d * d / (2.0 * WINDOW_SIGMA * WINDOW_SIGMA)).exp();
    }
    let sum: f64 = w.iter().sum();
    w.map(|v| v / sum)
}

/// Filter each row of `src` (and of `src²`) with `w`, treating samples outside as zero.
fn filter_rows(src: &Plane, w: &[f64; 2 * RADIUS + 1], mean: &mut Plane, mean_sq: &mut Plane) {
    let width = src.width;
    for y in 0..src.height {
        let row = src.row(y);
        let out = &mut mean.data[y * width..(y + 1) * width];
        let out_sq = &mut mean_sq.data[y * width..(y + 1) * width];
        for x in 0..width {
            let lo = x.saturating_sub(RADIUS);
            let hi = (x + RADIUS).min(width - 1);
            let (mut s, mut s2) = (0.0, 0.0);
            for (k, &v) in row[lo..=hi].iter().enumerate() {
                let wk = w[lo + k + RADIUS - x];
                s += wk * v;
                s2 += wk * v * v;
            }
            out[x] = s;
            out_sq[x] = s2;
        }
    }
}

/// MSCN coefficients of `image` with stabilising constant `c` (1/255 for samples in [0, 1], 1 for
/// samples in [0, 255]).
pub(crate) fn mscn(image: &Plane, c: f64) -> Plane {
    let w = gaussian_window();
    let (width, height) = (image.width, image.height);
    let mut h_mean = Plane::zeros(width, height);
    let mut h_mean_sq = Plane::zeros(width, height);
    filter_rows(image, &w, &mut h_mean, &mut h_mean_sq);

    let mut out = Plane::zeros(width, height);
    let mut mu = vec![0.0; width];
    let mut mu_sq = vec![0.0; width];
    for y in 0..height {
        mu.fill(0.0);
        mu_sq.fill(0.0);
        let lo = y.saturating_sub(RADIUS);
        let hi = (y + RADIUS).min(height - 1);
        for yy in lo..=hi {
            let wk = w[yy + RADIUS - y];
            for ((m, m2), (&a, &b)) in mu
                .iter_mut()
                .zip(mu_sq.iter_mut())
                .zip(h_mean.row(yy).iter().zip(h_mean_sq.row(yy)))
            {
                *m += wk * a;
                *m2 += wk * b;
            }
        }
        let dst = &mut out.data[y * width..(y + 1) * width];
        for (((d, &i), &m), &m2) in dst.iter_mut().zip(image.row(y)).zip(&mu).zip(&mu_sq) {
            let sigma = (m * m - m2).abs().sqrt();
            *d = (i - m) / (sigma + c);
        }
    }
    out
}

/// `brisque`'s normalised 7x7 window, which depends only on r² = dx² + dy²: the values numpy
/// computes for `gaussian_kernel2d(7, 7/6)`, indexed by r² (0 where r² is not a sum of squares).
/// Stored rather than recomputed because `exp` and numpy's pairwise sum must agree to the last bit.
const BRISQUE_WINDOW_BY_R2: [f64; 19] = {
    let mut w = [0.0; 19];
    w[0] = 0.117_396_355_390_013_49;
    w[1] = 0.081_305_114_516_614_87;
    w[2] = 0.056_309_428_215_198_19;
    w[4] = 0.027_008_944_999_942_323;
    w[5] = 0.018_705_566_786_105_406;
    w[8] = 0.006_213_848_015_864_077_5;
    w[9] = 0.004_303_520_521_060_792_5;
    w[10] = 0.002_980_486_298_974_274;
    w[13] = 0.000_990_095_038_924_366;
    w[18] = 0.000_157_758_635_808_269_9;
    w
};

/// Row `j` of the 2-D window.
fn brisque_window_row(j: usize) -> [f64; 7] {
    let dy = j.abs_diff(RADIUS);
    std::array::from_fn(|k| BRISQUE_WINDOW_BY_R2[dy * dy + k.abs_diff(RADIUS).pow(2)])
}

/// `image` with `RADIUS` zeros on every side, and its element-wise square likewise.
fn padded_with_squares(image: &Plane) -> (Vec<f64>, Vec<f64>, usize) {
    let pw = image.width + 2 * RADIUS;
    let mut padded = vec![0.0; pw * (image.height + 2 * RADIUS)];
    for y in 0..image.height {
        let start = (y + RADIUS) * pw + RADIUS;
        padded[start..start + image.width].copy_from_slice(image.row(y));
    }
    let squares = padded.iter().map(|v| v * v).collect();
    (padded, squares, pw)
}

/// MSCN coefficients as `brisque` 0.2.0 computes them, for grey samples in [0, 1] (C = 1/255).
///
/// `convolve2d` flips the window and, per window row j, sums the seven products of columns
/// n+3 ..= n-3 as `(((acc + (((t0 + t1) + t2) + t3)) + t4) + t5) + t6`: its compiled loop is
/// unrolled by four. We keep that order; the window is symmetric, so the flip only sets the order.
pub(crate) fn mscn_brisque(image: &Plane) -> Plane {
    const C: f64 = 1.0 / 255.0;
    let (width, height) = (image.width, image.height);
    let (padded, squares, pw) = padded_with_squares(image);
    let rows: [[f64; 7]; 7] = std::array::from_fn(brisque_window_row);
    let mut out = Plane::zeros(width, height);
    let mut mu = vec![0.0; width];
    let mut mu_sq = vec![0.0; width];
    for m in 0..height {
        mu.fill(0.0);
        mu_sq.fill(0.0);
        for (j, h) in rows.iter().enumerate() {
            // Window row j meets image row m + 3 - j, which is padded row m + 6 - j.
            let r = (m + 2 * RADIUS - j) * pw;
            accumulate_row(&mut mu, &padded[r..r + pw], h);
            accumulate_row(&mut mu_sq, &squares[r..r + pw], h);
        }
        let dst = &mut out.data[m * width..(m + 1) * width];
        for (((d, &i), &mean), &mean_sq) in dst.iter_mut().zip(image.row(m)).zip(&mu).zip(&mu_sq) {
            let sigma = (mean * mean - mean_sq).abs().sqrt();
            *d = (i - mean) / (sigma + C);
        }
    }
    out
}

/// Add one window row's seven products to `acc`, in `convolve2d`'s order. `row` is a padded
/// image row; output column n reads padded columns n + 6 - k for k = 0..7.
fn accumulate_row(acc: &mut [f64], row: &[f64], h: &[f64; 7]) {
    let n = acc.len();
    let col = |k: usize| &row[2 * RADIUS - k..2 * RADIUS - k + n];
    let (c0, c1, c2, c3, c4, c5, c6) = (col(0), col(1), col(2), col(3), col(4), col(5), col(6));
    for x in 0..n {
        let head = ((h[0] * c0[x] + h[1] * c1[x]) + h[2] * c2[x]) + h[3] * c3[x];
        acc[x] = (((acc[x] + head) + h[4] * c4[x]) + h[5] * c5[x]) + h[6] * c6[x];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_matches_reference_values() {
        // The 1-D factor of brisque 0.2.0's gaussian_kernel2d(7, 7/6), computed with numpy.
        let w = gaussian_window();
        assert!((w[3] - 0.342_631_515_465_249_45).abs() < 1e-15);
        assert!((w[0] - 0.012_560_200_468_474_61).abs() < 1e-15);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn brisque_window_is_the_normalised_gaussian() {
        // The stored values are numpy's rounding of the formula; they agree with ours to 1e-16.
        let sum: f64 = (0..7).flat_map(brisque_window_row).sum();
        assert!((sum - 1.0).abs() < 1e-15);
        let w = gaussian_window();
        for j in 0..7 {
            for (k, v) in brisque_window_row(j).iter().enumerate() {
                assert!((v - w[j] * w[k]).abs() < 1e-16, "({j}, {k})");
            }
        }
    }

    #[test]
    fn brisque_and_separable_filters_agree_up_to_rounding() {
        let image = Plane {
            width: 23,
            height: 17,
            data: (0..23 * 17).map(|i| ((i * 37 % 101) as f64) / 100.0).collect(),
        };
        let (a, b) = (mscn(&image, 1.0 / 255.0), mscn_brisque(&image));
        assert!(a.data.iter().zip(&b.data).all(|(x, y)| (x - y).abs() < 1e-9));
    }

    #[test]
    fn flat_interior_is_zero_and_edges_are_not() {
        // A flat image is not flat after zero padding: the border sees the dark outside.
        let image = Plane {
            width: 16,
            height: 16,
            data: vec![0.5; 256],
        };
        let m = mscn(&image, 1.0 / 255.0);
        assert!(m.at(8, 8).abs() < 1e-9);
        assert!(m.at(0, 8) > 0.1);
    }
}
