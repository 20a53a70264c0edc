//! Images as the engine sees them: decoded, oriented, limited and converted to 8-bit RGB.
//!
//! Decoding is the first thing hostile input touches, so [`decode`] reads the header first and
//! refuses anything over [`Limits`] before it allocates the pixels.

mod complete;
mod decode;
mod error;
pub(crate) mod pillow;

pub use decode::{decode, Limits};
pub use error::ImageError;

use image::RgbImage;

/// A decoded image and where it came from.
#[derive(Debug, Clone)]
pub struct Image {
    /// The name reported back to the user: a path relative to the source, or a URL.
    pub name: String,
    /// A hash of the encoded bytes, used to key caches of per-image work.
    pub content_hash: u64,
    pub rgb: RgbImage,
}

impl Image {
    /// Hash of encoded bytes, as stored in [`Image::content_hash`].
    pub fn hash_bytes(bytes: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(bytes)
    }
}
