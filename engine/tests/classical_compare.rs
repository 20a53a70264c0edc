//! The classical comparators answer groups with Plackett-Luce stages that follow their scores:
//! each stage sums to 1, its most likely slot is the best image left, and that image is removed
//! before the next stage. Failures name the image.

use std::path::Path;

use engine::classical::{brisque_score, Brisque, Niqe};
use engine::compare::{Comparator, CompareError, Criterion};
use engine::image::Image;

fn photo(name: &str) -> Image {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/photos")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rgb = image::load_from_memory(&bytes)
        .expect("example photo decodes")
        .to_rgb8();
    Image {
        name: name.to_string(),
        content_hash: Image::hash_bytes(&bytes),
        rgb,
    }
}

/// Check `compare` against `score` on a group, and return the stage winners in order.
fn check_stages(judge: &dyn Comparator, group: &[&Image]) -> Vec<u8> {
    let scores: Vec<f64> = group.iter().map(|im| judge.score(im).expect("scorable")).collect();
    let outcome = judge.compare(group, &Criterion::Overall).expect("comparable");
    assert_eq!(outcome.stages.len(), group.len() - 1);
    let mut winners = Vec::new();
    for (i, stage) in outcome.stages.iter().enumerate() {
        assert_eq!(stage.slots.len(), group.len() - i);
        assert!(winners.iter().all(|w| !stage.slots.contains(w)), "a winner came back");
        assert!((stage.probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Probabilities are ordered as the scores are.
        for a in 0..stage.slots.len() {
            for b in 0..stage.slots.len() {
                let (sa, sb) = (scores[stage.slots[a] as usize], scores[stage.slots[b] as usize]);
                if sa > sb {
                    assert!(
                        stage.probs[a] > stage.probs[b],
                        "stage {i}: slot order breaks score order"
                    );
                }
            }
        }
        let best = (0..stage.slots.len())
            .max_by(|&a, &b| stage.probs[a].total_cmp(&stage.probs[b]))
            .unwrap();
        winners.push(stage.slots[best]);
    }
    winners
}

#[test]
fn brisque_ranks_the_original_first_and_sums_to_one() {
    let photos = ["coffee-blur.jpg", "coffee.jpg", "coffee-noise.jpg", "coffee-jpeg.jpg"].map(photo);
    let group: Vec<&Image> = photos.iter().collect();
    let judge = Brisque::default();
    assert!(judge.scores_directly());
    assert_eq!(judge.model_id(), "brisque");
    // Higher is better: the score is minus the raw BRISQUE value.
    assert_eq!(judge.score(&photos[1]).unwrap(), -brisque_score(&photos[1].rgb));
    let winners = check_stages(&judge, &group);
    assert_eq!(winners[0], 1, "the undistorted photo wins the first stage");
    // Raw BRISQUE: noise 47.0 < jpeg 62.3 < blur 68.7, so after the original come noise, jpeg.
    assert_eq!(winners, vec![1, 2, 3]);
}

#[test]
fn niqe_answers_pairs_and_triples() {
    let photos = ["astronaut.jpg", "astronaut-blur.jpg", "chelsea-noise.jpg"].map(photo);
    let judge = Niqe::default();
    assert_eq!(judge.model_id(), "niqe");
    check_stages(&judge, &[&photos[0], &photos[1]]);
    check_stages(&judge, &photos.iter().collect::<Vec<_>>());
}

#[test]
fn groups_outside_two_to_four_are_refused() {
    let one = photo("rocket.jpg");
    let err = Brisque::default().compare(&[&one], &Criterion::Overall).unwrap_err();
    assert!(matches!(err, CompareError::GroupSize(1)));
    let five = vec![&one; 5];
    assert!(matches!(
        Niqe::default().compare(&five, &Criterion::Overall),
        Err(CompareError::GroupSize(5))
    ));
}

#[test]
fn failures_name_the_image() {
    let big = photo("rocket.jpg");
    let small = Image {
        name: "thumb.png".into(),
        content_hash: 0,
        rgb: image::RgbImage::new(120, 90),
    };
    match Niqe::default().compare(&[&big, &small], &Criterion::Overall) {
        Err(CompareError::Image { image, reason }) => {
            assert_eq!(image, "thumb.png");
            assert!(reason.contains("194"), "{reason}");
        }
        other => panic!("expected an image error, got {other:?}"),
    }
    let tiny = Image {
        name: "dot.png".into(),
        content_hash: 0,
        rgb: image::RgbImage::new(3, 3),
    };
    assert!(matches!(Brisque::default().score(&tiny), Err(CompareError::Image { image, .. }) if image == "dot.png"));
}
