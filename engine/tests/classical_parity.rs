//! BRISQUE parity with the Python package `brisque` 0.2.0.
//!
//! `scripts/brisque_reference.py` scored the files named in
//! `tests/data/classical/brisque_reference.json` with the package: distortion ladders stored as
//! PNG (so both sides see identical pixels) and the JPEG example photos (where our JPEG decoder
//! and Pillow's may differ by a grey level in places).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use engine::agreement::spearman;
use engine::classical::brisque_score;

/// Largest difference allowed on PNGs (measured: 5e-11). From the same pixels we reproduce every
/// rounding up to the MSCN map; after it only the summation order of the moment sums (numpy sums
/// pairwise) and the root finder's tolerance differ, each worth about 1e-12 relative.
const PNG_TOLERANCE: f64 = 1e-6;
/// Largest difference allowed on JPEGs (measured: 0.29). Our decoder (`image`, zune-jpeg) and
/// Pillow's libjpeg-turbo disagree by a grey level in some pixels; the PNGs show that the metric
/// itself adds nothing.
const JPEG_TOLERANCE: f64 = 0.5;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine sits in the workspace")
        .to_path_buf()
}

/// (file, Python score, our score) for every file in the reference.
fn scored() -> Vec<(String, f64, f64)> {
    let path = repo_root().join("engine/tests/data/classical/brisque_reference.json");
    let text = std::fs::read_to_string(&path).expect("reference file");
    let reference: BTreeMap<String, f64> = serde_json::from_str(&text).expect("reference JSON");
    reference
        .into_iter()
        .map(|(file, expected)| {
            let rgb = image::open(repo_root().join(&file))
                .expect("test image decodes")
                .to_rgb8();
            let ours = brisque_score(&rgb);
            (file, expected, ours)
        })
        .collect()
}

#[test]
fn brisque_matches_the_python_package() {
    let rows = scored();
    assert!(rows.len() >= 24, "reference covers {} images", rows.len());
    let (mut max_png, mut max_jpeg) = (0.0_f64, 0.0_f64);
    for (file, expected, ours) in &rows {
        let diff = (expected - ours).abs();
        println!("{file}: python {expected:.6} ours {ours:.6} diff {diff:.2e}");
        if file.ends_with(".png") {
            max_png = max_png.max(diff);
        } else {
            max_jpeg = max_jpeg.max(diff);
        }
    }
    let expected: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let ours: Vec<f64> = rows.iter().map(|r| r.2).collect();
    let rho = spearman(&expected, &ours);
    println!("spearman {rho:.6}, max abs diff png {max_png:.2e}, jpeg {max_jpeg:.2e}");
    assert!(rho >= 0.99, "spearman {rho}");
    assert!(max_png <= PNG_TOLERANCE, "max abs diff on PNGs {max_png}");
    assert!(max_jpeg <= JPEG_TOLERANCE, "max abs diff on JPEGs {max_jpeg}");
}

#[test]
fn every_degraded_example_photo_scores_worse_than_its_original() {
    let rows = scored();
    let score_of = |file: &str| rows.iter().find(|r| r.0 == file).map(|r| r.2);
    let mut checked = 0;
    for (file, _, ours) in &rows {
        let Some(stem) = file
            .strip_prefix("examples/photos/")
            .and_then(|f| f.strip_suffix(".jpg"))
        else {
            continue;
        };
        if let Some((base, tag)) = stem.split_once('-') {
            let original = score_of(&format!("examples/photos/{base}.jpg")).expect("original is scored");
            assert!(*ours > original, "{base}-{tag}: {ours} is not worse than {original}");
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} degraded photos found");
}
