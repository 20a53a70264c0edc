//! The half-size downscales the two references use for their second scale.
//!
//! They differ, and the second-scale features depend on the difference, so each is reproduced:
//! - `brisque` 0.2.0 calls `cv2.resize(fx=0.5, fy=0.5, INTER_CUBIC)`: Keys' cubic with a = -0.75,
//!   sampled at source position 2x + 0.5 with no low-pass (4 taps), edge samples replicated, and
//!   the output size rounded half to even.
//! - scikit-video calls `scipy.misc.imresize(0.5, 'bicubic', mode='F')`, which is Pillow's
//!   `resize(BICUBIC)`: Keys' cubic with a = -0.5 stretched by the scale factor (an anti-aliasing
//!   8-tap filter), taps outside the image dropped and the rest renormalised.

use super::plane::Plane;
use crate::image::pillow;

/// A 1-D resampling: for each output sample, its (source index, weight) taps in summation order.
type Taps = Vec<Vec<(usize, f64)>>;

/// Apply `taps_h` along rows, then `taps_v` along columns, summing each output's taps in order
/// from zero, as both OpenCV and Pillow do.
fn resample(src: &Plane, taps_h: &Taps, taps_v: &Taps) -> Plane {
    let out_w = taps_h.len();
    let mut tmp = Plane::zeros(out_w, src.height);
    for y in 0..src.height {
        let row = src.row(y);
        for (d, taps) in tmp.data[y * out_w..(y + 1) * out_w].iter_mut().zip(taps_h) {
            *d = taps.iter().fold(0.0, |acc, &(i, w)| acc + row[i] * w);
        }
    }
    let mut out = Plane::zeros(out_w, taps_v.len());
    for (y, taps) in taps_v.iter().enumerate() {
        let dst = &mut out.data[y * out_w..(y + 1) * out_w];
        for &(i, w) in taps {
            for (d, &s) in dst.iter_mut().zip(tmp.row(i)) {
                *d += s * w;
            }
        }
    }
    out
}

/// OpenCV's output size for a factor of 0.5: `cvRound(n * 0.5)`, ties to even.
fn opencv_half_len(n: usize) -> usize {
    let half = n / 2;
    if n % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// OpenCV INTER_CUBIC taps for a factor of 0.5. Every output sits at fraction 0.5 between
/// source samples, where Keys' a = -0.75 kernel gives these weights exactly; taps outside the
/// image read the edge sample.
fn opencv_cubic_half_taps(n: usize) -> Taps {
    const W: [f64; 4] = [-0.09375, 0.59375, 0.59375, -0.09375];
    (0..opencv_half_len(n))
        .map(|o| {
            // Source position (o + 0.5) * 2 - 0.5 = 2o + 0.5: taps at 2o - 1 ..= 2o + 2.
            (0..4)
                .map(|k| ((2 * o + k).saturating_sub(1).min(n - 1), W[k]))
                .collect()
        })
        .collect()
}

/// Half-size `cv2.resize(..., fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)`.
pub(crate) fn opencv_cubic_half(src: &Plane) -> Plane {
    resample(
        src,
        &opencv_cubic_half_taps(src.width),
        &opencv_cubic_half_taps(src.height),
    )
}

/// Pillow's taps for shrinking `n` samples to `n / 2`, as its `precompute_coeffs` builds them.
fn pillow_bicubic_half_taps(n: usize) -> Taps {
    const SCALE: f64 = 2.0;
    const SUPPORT: f64 = 2.0 * SCALE;
    (0..n / 2)
        .map(|o| {
            let center = (o as f64 + 0.5) * SCALE;
            // Pillow truncates towards zero, then clamps to the image.
            let lo = ((center - SUPPORT + 0.5) as i64).max(0) as usize;
            let hi = ((center + SUPPORT + 0.5) as i64).min(n as i64) as usize;
            let w: Vec<f64> = (lo..hi)
                .map(|x| pillow::bicubic((x as f64 - center + 0.5) / SCALE))
                .collect();
            let sum: f64 = w.iter().sum();
            (lo..hi).zip(w).map(|(x, v)| (x, v / sum)).collect()
        })
        .collect()
}

/// Half-size `PIL.Image.resize(BICUBIC)` of a float image, as `scipy.misc.imresize(0.5,
/// 'bicubic', mode='F')` did. `src` must have even dimensions (NIQE crops to whole patches).
pub(crate) fn pillow_bicubic_half(src: &Plane) -> Plane {
    resample(
        src,
        &pillow_bicubic_half_taps(src.width),
        &pillow_bicubic_half_taps(src.height),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opencv_sizes_round_half_to_even() {
        // cv2.resize(fx=0.5) on widths 5, 7, 9, 11 gives 2, 4, 4, 6.
        assert_eq!([5, 7, 9, 11, 8].map(opencv_half_len), [2, 4, 4, 6, 4]);
    }

    #[test]
    fn both_filters_preserve_constants_and_linear_ramps() {
        let ramp = Plane {
            width: 12,
            height: 10,
            data: (0..120).map(|i| (i % 12) as f64).collect(),
        };
        let cv = opencv_cubic_half(&ramp);
        // Interior outputs sit at 2x + 0.5 in source coordinates.
        assert!((cv.at(2, 2) - 4.5).abs() < 1e-12);
        let pil = pillow_bicubic_half(&ramp);
        assert_eq!((pil.width, pil.height), (6, 5));
        assert!((pil.at(2, 2) - 4.5).abs() < 1e-12);
        let flat = Plane {
            width: 9,
            height: 7,
            data: vec![3.0; 63],
        };
        assert!(opencv_cubic_half(&flat).data.iter().all(|v| (v - 3.0).abs() < 1e-12));
    }
}
