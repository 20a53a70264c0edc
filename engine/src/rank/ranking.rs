//! The ranking a user reads: one row per item, best first.

use super::fit::{Fit, SlotBias};

/// One item's place in the ranking.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RankedItem {
    /// 1 is the best.
    pub rank: u32,
    pub name: String,
    /// Higher is better. Log-strength for a fitted ranking, the metric's own score otherwise.
    pub score: f64,
    /// Standard error of `score`; 0 when a comparator scored each image directly, because that
    /// score is exact.
    pub std_error: f64,
    /// False when the comparisons never linked this item to the main body of the ranking, so
    /// its place comes from the prior alone.
    pub connected: bool,
    /// In top-k mode: the probability that this item belongs to the best k.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_top_k: Option<f64>,
    /// In threshold mode: the probability that this item is among the worst fraction, the
    /// images to drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_dropped: Option<f64>,
}

/// Why a comparison job stopped asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The budget of calls per image was spent.
    Budget,
    /// The last round moved the ranking by less than the tolerance.
    Stable,
    /// Top-k or threshold mode: no item's side of the cut is in enough doubt to be worth
    /// another comparison.
    Settled,
}

impl StopReason {
    /// The reason's name on the wire, as serde spells it.
    pub fn label(self) -> &'static str {
        match self {
            StopReason::Budget => "budget",
            StopReason::Stable => "stable",
            StopReason::Settled => "settled",
        }
    }
}

/// A complete ranking, sorted best first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Ranking {
    pub items: Vec<RankedItem>,
    /// Estimated slot biases, when they were fitted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slot_bias: Vec<SlotBias>,
    /// For a comparison job: why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
}

impl Ranking {
    /// Rank `names[i]` by `fit.scores[i]`.
    pub fn from_fit(names: &[String], fit: &Fit) -> Self {
        let rows = (0..names.len()).map(|i| (fit.scores[i], fit.std_errors[i], fit.connected[i]));
        Self {
            items: sorted(names, rows),
            slot_bias: fit.slot_bias.clone(),
            stop_reason: None,
        }
    }

    /// Rank by scores a comparator gave each image directly: exact, so no standard error.
    pub fn from_scores(names: &[String], scores: &[f64]) -> Self {
        let rows = scores.iter().map(|&s| (s, 0.0, true));
        Self {
            items: sorted(names, rows),
            slot_bias: Vec::new(),
            stop_reason: None,
        }
    }
}

fn sorted(names: &[String], rows: impl Iterator<Item = (f64, f64, bool)>) -> Vec<RankedItem> {
    let mut items: Vec<RankedItem> = names
        .iter()
        .zip(rows)
        .map(|(name, (score, std_error, connected))| RankedItem {
            rank: 0,
            name: name.clone(),
            score,
            std_error,
            connected,
            p_top_k: None,
            p_dropped: None,
        })
        .collect();
    // Best first; ties are broken by name so the output is deterministic.
    items.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.name.cmp(&b.name)));
    for (i, item) in items.iter_mut().enumerate() {
        item.rank = i as u32 + 1;
    }
    items
}
