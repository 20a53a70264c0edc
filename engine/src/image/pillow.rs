//! Pillow's resampling kernel, shared by the two places that must resize exactly as Pillow does:
//! Co-Instruct's preprocessing (fixed-point, 8 bits per channel) and NIQE's float downscale.

/// Keys' cubic convolution kernel with a = -0.5, as in Pillow's `bicubic_filter`.
pub(crate) fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}
