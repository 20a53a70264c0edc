//! Decoding of real files in every supported format and pixel layout, and refusal of hostile
//! ones with a reason that names the file. Fixtures come from `scripts/make_test_images.py`.

use std::path::PathBuf;

use engine::image::{decode, ImageError, Limits};

fn fixture(kind: &str, name: &str) -> (String, Vec<u8>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/images")
        .join(kind)
        .join(name);
    (
        name.to_owned(),
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}

fn good(name: &str) -> image::RgbImage {
    let (name, bytes) = fixture("good", name);
    decode(&name, &bytes, &Limits::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .rgb
}

fn bad(name: &str) -> ImageError {
    let (name, bytes) = fixture("bad", name);
    let error = decode(&name, &bytes, &Limits::default()).expect_err("must be refused");
    assert!(
        error.to_string().starts_with(&name),
        "error does not name the file: {error}"
    );
    error
}

/// Every format and layout decodes to the same 96x64 scene: gradient, with a bright top-left square.
#[test]
fn every_format_and_layout_decodes_to_rgb() {
    for name in [
        "rgb.jpg",
        "rgb.png",
        "rgb.webp",
        "rgb.tiff",
        "rgb.bmp",
        "palette.gif",
        "palette.png",
        "cmyk.jpg",
    ] {
        let rgb = good(name);
        assert_eq!(rgb.dimensions(), (96, 64), "{name}");
        let marker = rgb.get_pixel(10, 10);
        assert!(
            marker.0.iter().all(|&c| c > 200),
            "{name}: top-left marker is {marker:?}"
        );
        let right = rgb.get_pixel(90, 40);
        assert!(right[0] > 180, "{name}: red should grow to the right, got {right:?}");
    }
}

#[test]
fn grey_and_16_bit_become_equal_channel_rgb() {
    for name in ["gray.png", "gray16.png"] {
        let rgb = good(name);
        let p = rgb.get_pixel(50, 30);
        assert!(p[0] == p[1] && p[1] == p[2], "{name}: {p:?}");
        assert!(rgb.get_pixel(10, 10)[0] > 200, "{name}");
    }
    assert_eq!(
        good("gray.png"),
        good("gray16.png"),
        "16-bit grey must scale to the same 8-bit values"
    );
}

/// The right half of alpha.png is fully transparent: it must come out as the white background.
#[test]
fn alpha_is_composited_over_the_background() {
    let rgb = good("alpha.png");
    assert_eq!(rgb.get_pixel(80, 40).0, [255, 255, 255]);
    assert_ne!(rgb.get_pixel(20, 40).0, [255, 255, 255]);
    let (name, bytes) = fixture("good", "alpha.png");
    let black = Limits {
        background_rgb: [0, 0, 0],
        ..Limits::default()
    };
    assert_eq!(
        decode(&name, &bytes, &black).unwrap().rgb.get_pixel(80, 40).0,
        [0, 0, 0]
    );
}

/// Stored 96x64 with EXIF orientation 6: shown rotated 90 degrees clockwise, so the marker
/// moves from the top-left to the top-right corner.
#[test]
fn exif_orientation_is_applied() {
    let rgb = good("exif-rotate90.jpg");
    assert_eq!(rgb.dimensions(), (64, 96));
    assert!(rgb.get_pixel(64 - 11, 10)[0] > 200, "marker not at top-right");
    assert!(rgb.get_pixel(10, 10)[0] < 200, "marker still at top-left");
}

/// Photo formats we cannot decode are named in the error, with what to do about them: HEIC (as
/// iPhones save photos) and AVIF files made by libheif and libavif, and JPEG XL by its magic
/// bytes, in both its forms.
#[test]
fn photo_formats_we_cannot_read_are_named() {
    for (file, what) in [("phone.heic", "HEIC (HEIF)"), ("photo.avif", "AVIF")] {
        let e = bad(file);
        assert!(matches!(e, ImageError::Unsupported { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{file}: unsupported format: {what}; qrank reads JPEG, PNG")),
            "{e}"
        );
    }
    let limits = Limits::default();
    for jxl in [&[0xFF, 0x0A, 0x00][..], b"\0\0\0\x0cJXL \r\n\x87\n\0\0\0\x14ftypjxl "] {
        let e = decode("x.jxl", jxl, &limits).unwrap_err();
        assert!(e.to_string().contains("format: JPEG XL; qrank reads"), "{e}");
    }
    let e = decode("notes.txt", b"plain words, not an image", &limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        "notes.txt: unsupported format: not a recognised image format"
    );
}

#[test]
fn hostile_files_are_refused_with_their_reason() {
    assert!(matches!(bad("empty.jpg"), ImageError::Empty { .. }));
    assert!(matches!(bad("notes.txt"), ImageError::Unsupported { .. }));
    assert!(
        matches!(bad("truncated.jpg"), ImageError::Truncated { .. }),
        "{}",
        bad("truncated.jpg")
    );
    assert!(
        matches!(bad("truncated.png"), ImageError::Truncated { .. }),
        "{}",
        bad("truncated.png")
    );
    assert!(
        matches!(bad("corrupt.png"), ImageError::Corrupt { .. }),
        "{}",
        bad("corrupt.png")
    );
    let bomb = bad("bomb.png");
    assert!(matches!(bomb, ImageError::OverLimit { .. }), "{bomb}");
    assert!(
        bomb.to_string().contains("60000"),
        "the reason should give the size: {bomb}"
    );
}

#[test]
fn limits_apply_to_bytes_pixels_and_sides() {
    let (name, bytes) = fixture("good", "rgb.png");
    let tight = |limits: Limits| decode(&name, &bytes, &limits).expect_err("over a limit");
    let bytes_limit = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    assert!(tight(bytes_limit).to_string().contains("file size"));
    assert!(tight(Limits {
        max_pixels: 96 * 64 - 1,
        ..Limits::default()
    })
    .to_string()
    .contains("pixel count"));
    assert!(tight(Limits {
        max_side: 95,
        ..Limits::default()
    })
    .to_string()
    .contains("width"));
    assert!(decode(
        &name,
        &bytes,
        &Limits {
            max_pixels: 96 * 64,
            max_side: 96,
            ..Limits::default()
        }
    )
    .is_ok());
}

/// A stitched panorama wider than 16,384 pixels (WebP's limit, and qrank's until it took JPEG's
/// 65,535) is read like any photo: only the pixel count bounds it.
#[test]
fn a_wide_panorama_is_accepted() {
    let panorama = image::RgbImage::from_fn(30_000, 200, |x, _| image::Rgb([(x % 251) as u8, 90, 160]));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80)
        .encode_image(&panorama)
        .unwrap();
    let decoded = decode("pano.jpg", &bytes, &Limits::default()).unwrap();
    assert_eq!(decoded.rgb.dimensions(), (30_000, 200));
    // A lower side limit is still named in the refusal.
    let err = decode(
        "pano.jpg",
        &bytes,
        &Limits {
            max_side: 29_999,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("width 30000 is over 29999"), "{err}");
}

#[test]
fn content_hash_follows_the_bytes() {
    let (name, bytes) = fixture("good", "rgb.png");
    let a = decode(&name, &bytes, &Limits::default()).unwrap();
    let (_, other) = fixture("good", "rgb.bmp");
    let b = decode("rgb.bmp", &other, &Limits::default()).unwrap();
    assert_eq!(a.rgb, b.rgb, "same pixels");
    assert_ne!(a.content_hash, b.content_hash, "different files");
}

/// A file cut short inside its pixel data is refused as truncated in every format. JPEG's
/// decoder would fill the missing rows with grey and carry on, so that takes the container
/// check of `engine::image`, and a strict decode when only the end-of-image marker is missing.
#[test]
fn every_format_cut_short_is_truncated() {
    let formats = [
        "rgb.jpg",
        "cmyk.jpg",
        "exif-rotate90.jpg",
        "rgb.png",
        "rgb.webp",
        "rgb.tiff",
        "rgb.bmp",
        "palette.gif",
    ];
    for name in formats {
        let (_, bytes) = fixture("good", name);
        for cut in [bytes.len() / 2, bytes.len() * 9 / 10] {
            match decode(name, &bytes[..cut], &Limits::default()) {
                Err(ImageError::Truncated { .. }) => {}
                Err(other) => panic!("{name} cut at {cut} of {}: {other}", bytes.len()),
                Ok(_) => panic!("{name} cut at {cut} of {} was decoded", bytes.len()),
            }
        }
    }
}

/// A JPEG whose compressed data is all there, and only its end-of-image marker missing, is the
/// same picture (as every viewer shows it); a few bytes more missing, it is truncated.
#[test]
fn a_jpeg_missing_only_its_end_marker_is_the_same_picture() {
    for name in ["rgb.jpg", "cmyk.jpg", "exif-rotate90.jpg"] {
        let (_, bytes) = fixture("good", name);
        let whole = decode(name, &bytes, &Limits::default()).unwrap().rgb;
        assert_eq!(&bytes[bytes.len() - 2..], [0xFF, 0xD9], "{name} ends with its marker");
        let no_marker = decode(name, &bytes[..bytes.len() - 2], &Limits::default())
            .unwrap_or_else(|e| panic!("{name} without its end marker: {e}"))
            .rgb;
        assert_eq!(no_marker, whole, "{name}");
        let short = &bytes[..bytes.len() - 40];
        match decode(name, short, &Limits::default()) {
            Err(ImageError::Truncated { detail, .. }) => {
                assert!(detail.contains("stops short"), "{name}: {detail}")
            }
            other => panic!("{name} 40 bytes short: {other:?}"),
        }
    }
}

/// Bytes after a JPEG's end-of-image marker (some cameras append a trailer) are not truncation.
#[test]
fn data_after_a_jpegs_end_is_accepted() {
    let (name, mut bytes) = fixture("good", "rgb.jpg");
    let whole = decode(&name, &bytes, &Limits::default()).unwrap().rgb;
    bytes.extend_from_slice(b"\0\0camera trailer");
    assert_eq!(decode(&name, &bytes, &Limits::default()).unwrap().rgb, whole);
}
