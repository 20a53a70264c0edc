//! Mean-subtracted contrast-normalised (MSCN) coefficients, the common input of BRISQUE and NIQE.
//!
//! Each sample is replaced by `(I - μ) / (σ + C)`, where μ and σ are the local mean and standard
//! deviation under a 7x7 Gaussian window (σ = 7/6). Natural images give MSCN coefficients close to
//! a unit Gaussian; distortions bend that distribution in characteristic ways, which the AGGD fits
//! in [`super::aggd`] measure.
//!
//! Both references filter with zero padding outside the image (`scipy.signal.convolve2d(...,
//! 'same')` in `brisque`, `scipy.ndimage.correlate1d(mode='constant')` in scikit-video), and the
//! Gaussian window is separable, so two 1-D passes reproduce the 2-D filter.

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
            for ((m, m2), (&a, &b)) in
                mu.iter_mut().zip(mu_sq.iter_mut()).zip(h_mean.row(yy).iter().zip(h_mean_sq.row(yy)))
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
    fn flat_interior_is_zero_and_edges_are_not() {
        // A flat image is not flat after zero padding: the border sees the dark outside.
        let image = Plane { width: 16, height: 16, data: vec![0.5; 256] };
        let m = mscn(&image, 1.0 / 255.0);
        assert!(m.at(8, 8).abs() < 1e-9);
        assert!(m.at(0, 8) > 0.1);
    }
}
