//! Image preprocessing of Co-Instruct: pad to a square with the mean colour, resize to 448 with
//! Pillow's bicubic filter, normalise with CLIP's mean and std.
//!
//! Reference: Q-Future/Q-Align `mm_utils.py` (`expand2square`, `process_images(…, 'pad')`) and
//! transformers' `CLIPImageProcessor` (resample 3 = `PIL.Image.BICUBIC`), which resizes with
//! Pillow's `Resample.c`. The resize here is that algorithm in integer arithmetic, so the pixels
//! are bit-identical to the reference: a float bicubic would differ by one level at some pixels.
//!
//! The square is never materialised: rows are padded one at a time as the horizontal pass reads
//! them (or read in place when no side padding is needed), so a large photo costs no second
//! full-size copy.

use crate::image::pillow;
use image::RgbImage;
use rayon::prelude::*;

/// `tuple(int(x * 255) for x in image_mean)`: the padding colour of `expand2square`.
pub(crate) const BACKGROUND: [u8; 3] = [122, 116, 104];
/// CLIP's normalisation constants.
pub(crate) const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub(crate) const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Fractional bits of Pillow's fixed-point weights (`PRECISION_BITS` = 32 − 8 − 2).
const PRECISION_BITS: u32 = 22;

/// Fixed-point taps of one output position: first input index and one weight per tap.
#[derive(Debug, Clone)]
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero; the clamps follow.
            let first = ((centre - support + 0.5) as i64).max(0) as usize;
            let end = ((centre + support + 0.5) as i64).min(in_size as i64) as usize;
            // Pillow multiplies by the reciprocal (`ss`); dividing could round differently.
            let inv_scale = 1.0 / filter_scale;
            let raw: Vec<f64> = (first..end)
                .map(|x| pillow::bicubic((x as f64 - centre + 0.5) * inv_scale))
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    // Rounded half away from zero, then truncated, as Pillow does.
                    if w < 0.0 {
                        (-0.5 + w * one) as i32
                    } else {
                        (0.5 + w * one) as i32
                    }
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// `acc >> 22` clamped to a byte, with the 0.5 rounding term already in `acc`.
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The image centred on a square of background, read row by row without building it.
struct Square<'a> {
    src: &'a [u8],
    width: usize,
    height: usize,
    side: usize,
    left: usize,
    top: usize,
    /// One full row of background.
    background: Vec<u8>,
}

impl<'a> Square<'a> {
    fn new(img: &'a RgbImage) -> Self {
        let (width, height) = (img.width() as usize, img.height() as usize);
        let side = width.max(height);
        Self {
            src: img.as_raw(),
            width,
            height,
            side,
            left: (side - width) / 2,
            top: (side - height) / 2,
            background: BACKGROUND.iter().copied().cycle().take(side * 3).collect(),
        }
    }

    /// Row `y` of the square: the source row itself when it spans the square, else assembled
    /// in `scratch` from background and the source row.
    fn row<'s>(&'s self, y: usize, scratch: &'s mut Vec<u8>) -> &'s [u8] {
        if !(self.top..self.top + self.height).contains(&y) {
            return &self.background;
        }
        let start = (y - self.top) * self.width * 3;
        let line = &self.src[start..start + self.width * 3];
        if self.width == self.side {
            return line;
        }
        scratch.clear();
        scratch.extend_from_slice(&self.background[..self.left * 3]);
        scratch.extend_from_slice(line);
        scratch.extend_from_slice(&self.background[(self.left + self.width) * 3..]);
        scratch
    }
}

/// Pads `img` to a centred square of side `max(w, h)` and resizes it to `size`×`size`, as
/// `expand2square` + Pillow BICUBIC do. Returns packed RGB8.
pub(crate) fn square_resize(img: &RgbImage, size: usize) -> RgbImage {
    let square = Square::new(img);
    let side = square.side;
    if side == size {
        // Pillow skips both passes when the size does not change: a plain copy.
        let mut out = Vec::with_capacity(size * size * 3);
        let mut scratch = Vec::new();
        for y in 0..side {
            out.extend_from_slice(square.row(y, &mut scratch));
        }
        return RgbImage::from_raw(size as u32, size as u32, out).expect("size matches the buffer");
    }
    let horizontal = taps(side, size);
    let vertical = taps(side, size);
    // Horizontal pass over the input rows the vertical pass reads, clipped to u8 as Pillow does.
    let first_row = vertical.first().map_or(0, |t| t.first);
    let last_row = vertical.last().map_or(0, |t| t.first + t.weights.len());
    let mut middle = vec![0u8; (last_row - first_row) * size * 3];
    middle
        .par_chunks_mut(size * 3)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (i, out)| {
            let row = square.row(first_row + i, scratch);
            for (x, t) in horizontal.iter().enumerate() {
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                let taps = &row[t.first * 3..(t.first + t.weights.len()) * 3];
                for (px, &wt) in taps.chunks_exact(3).zip(&t.weights) {
                    acc[0] += i32::from(px[0]) * wt;
                    acc[1] += i32::from(px[1]) * wt;
                    acc[2] += i32::from(px[2]) * wt;
                }
                out[x * 3] = clip8(acc[0]);
                out[x * 3 + 1] = clip8(acc[1]);
                out[x * 3 + 2] = clip8(acc[2]);
            }
        });
    let stride = size * 3;
    let mut out = vec![0u8; size * stride];
    out.par_chunks_mut(stride)
        .zip(vertical.par_iter())
        .for_each(|(line, t)| {
            let mut acc = vec![1i32 << (PRECISION_BITS - 1); stride];
            for (k, &wt) in t.weights.iter().enumerate() {
                let src_row = &middle[(t.first + k - first_row) * stride..][..stride];
                for (a, &p) in acc.iter_mut().zip(src_row) {
                    *a += i32::from(p) * wt;
                }
            }
            for (o, a) in line.iter_mut().zip(acc) {
                *o = clip8(a);
            }
        });
    RgbImage::from_raw(size as u32, size as u32, out).expect("size matches the buffer")
}

/// RGB8 `[h, w, 3]` → normalised f32 `[3, h, w]`: `(u8 / 255 − mean) / std`, all in f32.
pub(crate) fn normalise(img: &RgbImage) -> Vec<f32> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[c]) / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (n_in, n_out) in [(37, 448), (512, 448), (4000, 448)] {
            for t in taps(n_in, n_out) {
                let sum: i32 = t.weights.iter().sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= t.weights.len() as i32,
                    "{n_in}->{n_out}"
                );
                assert!(t.first + t.weights.len() <= n_in);
            }
        }
    }

    #[test]
    fn square_input_of_the_target_size_is_copied() {
        let img = RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8, y as u8, 7]));
        assert_eq!(square_resize(&img, 8), img);
    }

    #[test]
    fn padding_is_centred_with_the_mean_colour() {
        // 2 wide × 4 high: one column of background on each side, no resize.
        let img = RgbImage::from_pixel(2, 4, image::Rgb([0, 0, 0]));
        let out = square_resize(&img, 4);
        assert_eq!(out.get_pixel(0, 2).0, BACKGROUND);
        assert_eq!(out.get_pixel(1, 2).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(3, 0).0, BACKGROUND);
    }

    #[test]
    fn a_panorama_is_padded_into_a_square_not_stretched() {
        // 20,000 x 500: the picture fills a band 448 * 500 / 20,000 = 11.2 rows high.
        let img = RgbImage::from_pixel(20_000, 500, image::Rgb([0, 0, 0]));
        let out = square_resize(&img, 448);
        assert_eq!(out.dimensions(), (448, 448));
        assert_eq!(out.get_pixel(224, 224).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(224, 100).0, BACKGROUND);
        assert_eq!(out.get_pixel(224, 348).0, BACKGROUND);
    }

    #[test]
    fn normalise_is_channel_major() {
        let img = RgbImage::from_pixel(1, 2, image::Rgb([255, 0, 122]));
        let x = normalise(&img);
        assert_eq!(x.len(), 6);
        assert_eq!(x[0], (1.0 - MEAN[0]) / STD[0]);
        assert_eq!(x[2], (0.0 - MEAN[1]) / STD[1]);
        assert_eq!(x[5], (122.0 / 255.0 - MEAN[2]) / STD[2]);
    }
}
