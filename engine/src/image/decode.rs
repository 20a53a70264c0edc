//! Bytes to RGB: sniff the format, check that the file is whole ([`super::complete`]) and its
//! header within [`Limits`], decode, apply the EXIF orientation, and flatten every pixel layout
//! (grey, palette, 16-bit, CMYK, alpha) to RGB8.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};

use super::complete::{check_complete, rows_all_there, Completeness};
use super::{Image, ImageError};

/// The formats we accept. Others the `image` crate might know are refused as unsupported, so
/// what we accept is what we test.
const FORMATS: [ImageFormat; 6] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Tiff,
    ImageFormat::Gif,
    ImageFormat::Bmp,
];

/// Bounds checked before any pixel is allocated, so a decompression bomb costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest encoded file accepted.
    pub max_bytes: u64,
    /// Largest width x height accepted.
    pub max_pixels: u64,
    /// Largest width or height accepted. The pixel count bounds the memory of the decoded image;
    /// this bounds the model's square preprocessing, whose scratch grows with the longer side
    /// (about 1.3 KiB a pixel of it: 88 MB at the default, less than a 64 MP image itself).
    /// 65,535 is JPEG's own limit, so a stitched panorama of any width JPEG allows gets through.
    pub max_side: u32,
    /// Colour that transparent pixels are composited over.
    pub background_rgb: [u8; 3],
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            max_pixels: 64_000_000,
            max_side: 65_535,
            background_rgb: [255, 255, 255],
        }
    }
}

impl Limits {
    /// Refuse a file whose encoded size is over the limit, before reading it.
    pub fn check_bytes(&self, name: &str, num_bytes: u64) -> Result<(), ImageError> {
        over(name, "file size in bytes", num_bytes, self.max_bytes)
    }

    fn check_dimensions(&self, name: &str, (width, height): (u32, u32)) -> Result<(), ImageError> {
        over(name, "width", width.into(), self.max_side.into())?;
        over(name, "height", height.into(), self.max_side.into())?;
        over(
            name,
            "pixel count",
            u64::from(width) * u64::from(height),
            self.max_pixels,
        )
    }
}

fn over(name: &str, what: &'static str, value: u64, limit: u64) -> Result<(), ImageError> {
    if value > limit {
        let detail = format!("{what} {value} is over {limit}");
        return Err(ImageError::OverLimit {
            name: name.to_owned(),
            detail,
        });
    }
    Ok(())
}

/// Decode one encoded image named `name` into an oriented RGB8 [`Image`].
pub fn decode(name: &str, bytes: &[u8], limits: &Limits) -> Result<Image, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty { name: name.to_owned() });
    }
    limits.check_bytes(name, bytes.len() as u64)?;
    let unsupported = |what: &str| ImageError::Unsupported {
        name: name.to_owned(),
        detail: format!("{what}; qrank reads JPEG, PNG, WebP, TIFF, GIF and BMP, so convert it to one of those"),
    };
    let format = match (image::guess_format(bytes), photo_format_we_cannot_read(bytes)) {
        (_, Some(what)) => return Err(unsupported(what)),
        (Ok(format), None) if FORMATS.contains(&format) => format,
        (Ok(format), None) => return Err(unsupported(&format!("{format:?}"))),
        (Err(_), None) => {
            return Err(ImageError::Unsupported {
                name: name.to_owned(),
                detail: "not a recognised image format".to_owned(),
            })
        }
    };
    let completeness = check_complete(name, format, bytes)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits(limits));
    let mut decoder = reader.into_decoder().map_err(|e| classify(name, e))?;
    limits.check_dimensions(name, decoder.dimensions())?;
    if completeness == Completeness::EndMarkerMissing {
        rows_all_there(bytes).map_err(|detail| ImageError::Truncated {
            name: name.to_owned(),
            detail,
        })?;
    }
    // A missing or unreadable EXIF block is common and harmless: show the pixels as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(|e| classify(name, e))?;
    decoded.apply_orientation(orientation);
    Ok(Image {
        name: name.to_owned(),
        content_hash: Image::hash_bytes(bytes),
        rgb: to_rgb(decoded, limits.background_rgb),
    })
}

/// The name of a photo format common in photo folders that we cannot decode, from its magic
/// bytes, so that the error says what the file is: HEIC is how iPhones save photos, and the
/// `image` crate does not know it (it would say "not a recognised image format").
fn photo_format_we_cannot_read(bytes: &[u8]) -> Option<&'static str> {
    const JXL_CONTAINER: &[u8] = b"\0\0\0\x0cJXL \r\n\x87\n";
    if bytes.starts_with(&[0xFF, 0x0A]) || bytes.starts_with(JXL_CONTAINER) {
        return Some("JPEG XL");
    }
    // ISO base media files (HEIF, AVIF, camera raw CR3) open with an `ftyp` box: a major brand
    // and compatible brands, 4 bytes each. An AVIF file may name the generic HEIF brand `mif1`
    // too, so AVIF is looked for first.
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let brands: Vec<&[u8]> = bytes[8..box_len.clamp(16, bytes.len())]
        .chunks_exact(4)
        .enumerate()
        .filter(|&(i, _)| i != 1) // the minor version
        .map(|(_, brand)| brand)
        .collect();
    let has = |wanted: &[&[u8; 4]]| brands.iter().any(|b| wanted.iter().any(|w| b == w));
    if has(&[b"avif", b"avis"]) {
        Some("AVIF")
    } else if has(&[b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"]) {
        Some("HEIC (HEIF)")
    } else if has(&[b"crx "]) {
        Some("Canon raw (CR3)")
    } else {
        None
    }
}

/// The `image` crate's own allocation guard, a second line behind our header check.
fn decoder_limits(limits: &Limits) -> image::Limits {
    // Width and height are left to our own header check, whose message names the limit.
    let mut inner = image::Limits::no_limits();
    // Room for the largest allowed image at 16 bits x 4 channels, plus decoder scratch.
    inner.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    inner
}

/// Flatten any pixel layout to RGB8, compositing alpha over `background`.
fn to_rgb(decoded: DynamicImage, background: [u8; 3]) -> RgbImage {
    if !decoded.color().has_alpha() {
        return decoded.into_rgb8();
    }
    let rgba = decoded.into_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let alpha = u32::from(src[3]);
        for c in 0..3 {
            let blended = u32::from(src[c]) * alpha + u32::from(background[c]) * (255 - alpha);
            dst[c] = ((blended + 127) / 255) as u8;
        }
    }
    out
}

/// Map the `image` crate's error to ours. Truncation shows up as an unexpected end of data in
/// whichever layer noticed it, so it is recognised by the I/O kind or the decoder's wording.
fn classify(name: &str, error: image::ImageError) -> ImageError {
    let name = name.to_owned();
    match error {
        image::ImageError::Limits(e) => ImageError::OverLimit {
            name,
            detail: e.to_string(),
        },
        image::ImageError::Unsupported(e) => ImageError::Unsupported {
            name,
            detail: e.to_string(),
        },
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => ImageError::Truncated {
            name,
            detail: e.to_string(),
        },
        other => {
            let detail = other.to_string().trim().to_owned();
            if looks_truncated(&detail) {
                ImageError::Truncated { name, detail }
            } else {
                ImageError::Corrupt { name, detail }
            }
        }
    }
}

fn looks_truncated(detail: &str) -> bool {
    let lower = detail.to_ascii_lowercase();
    [
        "eof",
        "end of file",
        "unexpected end",
        "truncat",
        "no more bytes",
        "not enough bytes",
        "not enough data",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}
