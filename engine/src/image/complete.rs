//! Is the file all there? A check on the container, before decoding.
//!
//! The decoders catch truncation in most formats, but not in JPEG: a file cut anywhere inside
//! its compressed data decodes without an error, the missing rows filled with grey. Such a file
//! was ranked like any other, and, being half grey, ranked last, instead of being reported. So
//! a JPEG must reach its end-of-image marker, and a WebP must be as long as its RIFF header
//! says (the WebP decoder notices, but calls it corrupt).
//!
//! A JPEG whose compressed data is all there and only the end-of-image marker is missing (some
//! writers leave it out; every viewer shows the picture) is not truncated. The bytes cannot tell
//! the two apart, only decoding can: [`Completeness::EndMarkerMissing`] asks the caller to decode
//! it strictly, once the header has passed the limits ([`rows_all_there`]).
//!
//! Only running out of bytes is judged here. Anything else unusual in the structure is left to
//! the decoder, which knows the format better and names what is wrong.

use image::ImageFormat;

use super::ImageError;

/// What the container says of a file's end.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Completeness {
    /// All there, or unusual enough to leave to the decoder.
    Whole,
    /// A JPEG whose last scan runs to the end of the file with no end-of-image marker: whole if
    /// its rows all decode ([`rows_all_there`]).
    EndMarkerMissing,
}

/// `Err(Truncated)` when `bytes`, an image in `format`, ends before its container does.
pub(super) fn check_complete(name: &str, format: ImageFormat, bytes: &[u8]) -> Result<Completeness, ImageError> {
    let end = match format {
        ImageFormat::Jpeg => jpeg_end(bytes),
        ImageFormat::WebP => webp_missing_bytes(bytes).map_or(Ok(Completeness::Whole), Err),
        _ => Ok(Completeness::Whole),
    };
    end.map_err(|detail| ImageError::Truncated {
        name: name.to_owned(),
        detail,
    })
}

/// Whether every row of a JPEG decodes from the bytes there are, by a decoder that fails where
/// the usual one fills in grey (zune-jpeg in strict mode). Only for a JPEG whose header is within
/// the limits, as it decodes the whole image. Says what stopped it otherwise.
pub(super) fn rows_all_there(bytes: &[u8]) -> Result<(), String> {
    use zune_jpeg::zune_core::{bytestream::ZCursor, options::DecoderOptions};
    let options = DecoderOptions::default().set_strict_mode(true);
    zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options)
        .decode()
        .map(drop)
        .map_err(|e| format!("the JPEG has no end-of-image marker and its compressed data stops short ({e})"))
}

const MARKER: u8 = 0xFF;
const END_OF_IMAGE: u8 = 0xD9;
const START_OF_SCAN: u8 = 0xDA;

/// Walk a JPEG's segments from the start-of-image marker to the end-of-image marker: skip each
/// segment by its length, and each scan's compressed data to the next marker. `Whole` at the
/// marker, or at a structure unusual enough to leave to the decoder; `EndMarkerMissing` when the
/// bytes run out inside a scan's compressed data; why, when they run out anywhere else.
fn jpeg_end(bytes: &[u8]) -> Result<Completeness, String> {
    let ran_out = |what: &str| Err(format!("the JPEG ends inside {what}, before its end-of-image marker"));
    // After the start-of-image marker, FF D8.
    let mut pos = 2;
    loop {
        if pos >= bytes.len() {
            return ran_out("its segment list");
        }
        if bytes[pos] != MARKER {
            return Ok(Completeness::Whole);
        }
        // Any number of FF bytes may pad the space before a marker.
        while pos < bytes.len() && bytes[pos] == MARKER {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return ran_out("a marker");
        };
        pos += 1;
        match marker {
            END_OF_IMAGE => return Ok(Completeness::Whole),
            // Markers without a segment: restart markers and TEM.
            0xD0..=0xD7 | 0x01 => continue,
            _ => {}
        }
        let Some(length) = bytes
            .get(pos..pos + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return ran_out("a segment header");
        };
        if length < 2 {
            return Ok(Completeness::Whole);
        }
        pos += length;
        if pos > bytes.len() {
            return ran_out("a segment");
        }
        if marker == START_OF_SCAN {
            match next_marker(&bytes[pos..]) {
                Some(offset) => pos += offset,
                None => return Ok(Completeness::EndMarkerMissing),
            }
        }
    }
}

/// The offset of the first marker in a scan's compressed data: an FF that is neither a stuffed
/// zero (FF 00) nor a restart marker (FF D0 to FF D7), which belong to the data.
fn next_marker(data: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while let Some(offset) = data[pos..].iter().position(|&b| b == MARKER) {
        pos += offset;
        match data.get(pos + 1) {
            None => return None,
            Some(0x00 | 0xD0..=0xD7) => pos += 2,
            // Fill bytes before a marker are themselves FF: the marker starts here.
            Some(_) => return Some(pos),
        }
    }
    None
}

/// A WebP file is a RIFF container whose header gives the length of the rest.
fn webp_missing_bytes(bytes: &[u8]) -> Option<String> {
    let declared = bytes.get(4..8)?;
    let expected = u64::from(u32::from_le_bytes([declared[0], declared[1], declared[2], declared[3]])) + 8;
    let actual = bytes.len() as u64;
    (actual < expected).then(|| format!("the WebP header declares {expected} bytes, the file has {actual}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP0-like segment, a scan whose data holds a stuffed FF 00 and a restart marker,
    /// then EOI.
    fn tiny_jpeg() -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB];
        bytes.extend([0xFF, 0xDA, 0x00, 0x03, 0x01]);
        bytes.extend([0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        bytes.extend([0xFF, 0xD9]);
        bytes
    }

    #[test]
    fn a_whole_jpeg_passes_and_every_cut_of_it_is_truncated_or_to_be_decoded() {
        let whole = tiny_jpeg();
        assert_eq!(jpeg_end(&whole), Ok(Completeness::Whole));
        // The scan's data runs from byte 13 to the end-of-image marker at 20: a cut from there to
        // the marker's last byte leaves the decoder to say whether the rows are all there.
        for cut in 2..whole.len() {
            let want_decoded = (13..=21).contains(&cut);
            match jpeg_end(&whole[..cut]) {
                Err(_) => assert!(!want_decoded, "cut at {cut}"),
                Ok(Completeness::EndMarkerMissing) => assert!(want_decoded, "cut at {cut}"),
                Ok(Completeness::Whole) => panic!("cut at {cut} of {} reached the end", whole.len()),
            }
        }
    }

    #[test]
    fn bytes_after_the_end_and_fill_before_markers_are_allowed() {
        let mut padded = tiny_jpeg();
        padded.extend(b"trailing data that some cameras append");
        assert_eq!(jpeg_end(&padded), Ok(Completeness::Whole));
        let mut filled = tiny_jpeg();
        let end = filled.len() - 2;
        filled.splice(end..end, [0xFF, 0xFF]);
        assert_eq!(jpeg_end(&filled), Ok(Completeness::Whole));
    }

    #[test]
    fn an_unusual_structure_is_left_to_the_decoder() {
        assert_eq!(jpeg_end(&[0xFF, 0xD8, 0x00, 0x01]), Ok(Completeness::Whole));
    }

    #[test]
    fn a_short_webp_is_truncated() {
        let mut webp = b"RIFF".to_vec();
        webp.extend(12u32.to_le_bytes());
        webp.extend(b"WEBPVP8 \0\0\0\0");
        assert_eq!(webp_missing_bytes(&webp), None);
        let detail = webp_missing_bytes(&webp[..15]).expect("cut short");
        assert!(detail.contains("declares 20 bytes, the file has 15"), "{detail}");
    }
}
