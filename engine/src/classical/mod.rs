//! Classical no-reference quality metrics: BRISQUE and NIQE.
//!
//! They score one image at a time from natural-scene statistics, using parameters published with
//! their reference implementations (embedded from `engine/data/`), so they run on any CPU with
//! nothing to download. Both reproduce a specific Python package rather than the papers, because
//! the scores users compare us against come from those packages:
//! [`brisque_score`] matches `brisque` 0.2.0 and [`niqe_score`] scikit-video 1.1.11's `niqe`.
//!
//! Both raw metrics are "lower is better". As [`Comparator`]s, [`Brisque`] and [`Niqe`] report the
//! negated value, so that higher is better as the trait requires, and answer groups with the
//! Plackett-Luce probabilities those scores imply (module `choice`).

mod aggd;
mod brisque;
mod choice;
mod linalg;
mod mscn;
mod niqe;
mod plane;
mod resize;
mod special;
mod svm;

pub use brisque::brisque_score;
pub use niqe::niqe_score;

use crate::compare::{Comparator, CompareError, Criterion, GroupOutcome};
use crate::image::Image;

/// Why a metric could not judge an image.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClassicalError {
    #[error("image is {width}x{height}, but this metric needs at least {min_side} pixels on each side")]
    TooSmall {
        width: usize,
        height: usize,
        min_side: usize,
    },
    #[error("the metric is undefined for this image (its statistics are degenerate)")]
    Undefined,
}

impl ClassicalError {
    /// `Err(TooSmall)` unless both sides of `rgb` are at least `min_side` pixels.
    fn check_size(rgb: &image::RgbImage, min_side: usize) -> Result<(), ClassicalError> {
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        if width < min_side || height < min_side {
            return Err(ClassicalError::TooSmall {
                width,
                height,
                min_side,
            });
        }
        Ok(())
    }
}

/// Negate a raw "lower is better" metric, or name the image it failed on.
fn quality(image: &Image, raw: Result<f64, ClassicalError>) -> Result<f64, CompareError> {
    raw.map(|v| -v).map_err(|e| CompareError::Image {
        image: image.name.clone(),
        reason: e.to_string(),
    })
}

/// Score every image of a group and answer with stage-wise choice probabilities.
fn compare_by_score(
    group: &[&Image],
    temperature: f64,
    score: impl Fn(&Image) -> Result<f64, CompareError>,
) -> Result<GroupOutcome, CompareError> {
    if !(2..=4).contains(&group.len()) {
        return Err(CompareError::GroupSize(group.len()));
    }
    let scores = group.iter().map(|image| score(image)).collect::<Result<Vec<_>, _>>()?;
    Ok(choice::plackett_luce_stages(&scores, temperature))
}

/// BRISQUE as a comparator. [`Comparator::score`] is minus the BRISQUE value, so higher is
/// better; the criterion is ignored, since BRISQUE measures overall quality only.
#[derive(Debug, Clone, PartialEq)]
pub struct Brisque {
    /// BRISQUE points that give odds of e : 1 in [`Comparator::compare`]. The package's scores
    /// span roughly 0 (pristine) to 100 (destroyed); clear-cut distortions move them by 10 or more.
    pub temperature: f64,
}

impl Default for Brisque {
    fn default() -> Self {
        Self { temperature: 5.0 }
    }
}

impl Comparator for Brisque {
    fn model_id(&self) -> String {
        "brisque".into()
    }

    fn scores_directly(&self) -> bool {
        true
    }

    fn score(&self, image: &Image) -> Result<f64, CompareError> {
        quality(image, brisque::try_brisque_score(&image.rgb))
    }

    fn compare(&self, group: &[&Image], _criterion: &Criterion) -> Result<GroupOutcome, CompareError> {
        compare_by_score(group, self.temperature, |image| self.score(image))
    }
}

/// NIQE as a comparator. [`Comparator::score`] is minus the NIQE value, so higher is better; the
/// criterion is ignored, since NIQE measures overall naturalness only. Images need at least 194
/// pixels on each side.
#[derive(Debug, Clone, PartialEq)]
pub struct Niqe {
    /// NIQE units that give odds of e : 1 in [`Comparator::compare`]. Photos score about 3 to 10,
    /// and a visible distortion adds 1 or more.
    pub temperature: f64,
}

impl Default for Niqe {
    fn default() -> Self {
        Self { temperature: 1.0 }
    }
}

impl Comparator for Niqe {
    fn model_id(&self) -> String {
        "niqe".into()
    }

    fn scores_directly(&self) -> bool {
        true
    }

    fn score(&self, image: &Image) -> Result<f64, CompareError> {
        quality(image, niqe::try_niqe_score(&image.rgb))
    }

    fn compare(&self, group: &[&Image], _criterion: &Criterion) -> Result<GroupOutcome, CompareError> {
        compare_by_score(group, self.temperature, |image| self.score(image))
    }
}
