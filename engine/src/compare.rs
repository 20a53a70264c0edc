//! The comparator contract: a group of 2..=4 images and a criterion go in, stage-wise choice
//! distributions come out.
//!
//! Stage 1 is P(best = i) over the whole group. Stage 2 is the same over the images left once the
//! stage-1 winner is removed, and so on; a full ranking of 4 is 3 stages and a pair is 1 stage.
//! Soft answers keep the model's confidence, which the Plackett-Luce fit uses directly.

use crate::image::Image;

/// What the comparator is asked about the group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    #[default]
    Overall,
    Sharpness,
    Noise,
    Exposure,
    Colour,
    /// A free-form question, phrased so that its answer picks one image.
    Custom(String),
}

/// One stage of a group's answer: a choice distribution over the slots still in play.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// Slots (positions in the group as shown to the comparator) still in play.
    pub slots: Vec<u8>,
    /// Probability that each of `slots` is the best of them; sums to 1.
    pub probs: Vec<f64>,
}

/// A comparator's answer for one group, in the slot order the group was shown in.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct GroupOutcome {
    pub stages: Vec<Stage>,
}

/// Errors a comparator reports for one group; they fail that group, never the job.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("group of {0} images is outside 2..=4")]
    GroupSize(usize),
    #[error("comparator failed on {image}: {reason}")]
    Image { image: String, reason: String },
    #[error("comparator failed: {0}")]
    Model(String),
}

/// Counts of a comparator's cache of per-image work, since the comparator was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Images whose work was found in the cache.
    pub hits: u64,
    /// Images whose work was done again: first seen, or evicted since.
    pub misses: u64,
    /// Bytes held now.
    pub bytes: u64,
}

/// A judge of image quality.
///
/// Some judges score one image at a time (BRISQUE, NIQE). Their ordering is exact, so the job
/// ranks by [`Comparator::score`] directly and spends no comparisons. Others can only compare
/// (Co-Instruct, the simulated comparator); the job then schedules groups and fits a
/// Plackett-Luce model to the answers. Both kinds run through [`crate::job::Job`].
pub trait Comparator: Send + Sync {
    /// A stable identifier reported with every result, e.g. `brisque` or `q-future/co-instruct`.
    fn model_id(&self) -> String;

    /// True when [`Comparator::score`] gives an absolute score for a single image.
    fn scores_directly(&self) -> bool {
        false
    }

    /// Quality score of one image, higher is better. Only called when `scores_directly()`.
    fn score(&self, image: &Image) -> Result<f64, CompareError> {
        let _ = image;
        Err(CompareError::Model(format!(
            "{} cannot score a single image",
            self.model_id()
        )))
    }

    /// Reduce a decoded image to what this comparator needs, so the job keeps less in memory.
    fn prepare(&self, image: Image) -> Image {
        image
    }

    /// Judge a group of 2..=4 prepared images.
    fn compare(&self, group: &[&Image], criterion: &Criterion) -> Result<GroupOutcome, CompareError>;

    /// The numeric precision the model's weights were loaded in, for models that have one
    /// (Co-Instruct: `f32`, `bf16`, `f16` or `q8`), so that a result says what judged it.
    fn precision(&self) -> Option<String> {
        None
    }

    /// What the comparator's cache of per-image work has done since it was loaded, if it keeps
    /// one (Co-Instruct keeps each image's tokens), so that its size can be judged in service.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }
}
