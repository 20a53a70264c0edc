//! A single-channel image of `f64` samples, the working format of both metrics.
//!
//! The reference implementations work in floating point on a luminance plane; keeping our own
//! small type (rather than `image::ImageBuffer<Luma<f64>>`) makes row access and the
//! filter loops plain slice code.

/// A row-major plane of samples.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plane {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f64>,
}

impl Plane {
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0.0; width * height],
        }
    }

    /// Apply `f` to every pixel's (R, G, B), in 0..=255, to make a plane.
    pub fn from_rgb(rgb: &image::RgbImage, f: impl Fn([f64; 3]) -> f64) -> Self {
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        let data = rgb.pixels().map(|p| f(p.0.map(f64::from))).collect();
        Self { width, height, data }
    }

    pub fn row(&self, y: usize) -> &[f64] {
        &self.data[y * self.width..(y + 1) * self.width]
    }

    pub fn at(&self, x: usize, y: usize) -> f64 {
        self.data[y * self.width + x]
    }

    /// The top-left `width` x `height` region.
    pub fn crop(&self, width: usize, height: usize) -> Self {
        let data = (0..height).flat_map(|y| &self.row(y)[..width]).copied().collect();
        Self { width, height, data }
    }
}
