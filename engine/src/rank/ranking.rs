//! The ranking a user reads: one row per item, best first.

use super::fit::{Fit, SlotBias};
use crate::schedule::focus::num_dropped;

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
    /// In threshold mode: whether this item is among the worst fraction, the images to drop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<bool>,
    /// In threshold mode, when the ranking was fitted: the probability that this item truly is
    /// among the worst fraction.
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
    pub const ALL: [StopReason; 3] = [StopReason::Budget, StopReason::Stable, StopReason::Settled];

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

    /// Mark the worst `fraction` of the items dropped (threshold mode), the count rounded as
    /// the cut probabilities round it.
    pub fn mark_dropped(&mut self, fraction: f64) {
        let keep = self.items.len() - num_dropped(fraction, self.items.len());
        for (i, item) in self.items.iter_mut().enumerate() {
            item.dropped = Some(i >= keep);
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
            dropped: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_fraction_is_marked_dropped_rounding_to_the_nearest_count() {
        let names: Vec<String> = (0..5).map(|i| format!("{i}.jpg")).collect();
        let mut ranking = Ranking::from_scores(&names, &[5.0, 1.0, 4.0, 2.0, 3.0]);
        ranking.mark_dropped(0.3);
        let dropped: Vec<(&str, Option<bool>)> = ranking.items.iter().map(|i| (i.name.as_str(), i.dropped)).collect();
        assert_eq!(
            dropped,
            [
                ("0.jpg", Some(false)),
                ("2.jpg", Some(false)),
                ("4.jpg", Some(false)),
                ("3.jpg", Some(true)),
                ("1.jpg", Some(true)),
            ],
            "0.3 of 5 is 1.5, which rounds to 2"
        );
        let count = |fraction: f64, n: usize| {
            let names: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let mut ranking = Ranking::from_scores(&names, &vec![0.0; n]);
            ranking.mark_dropped(fraction);
            ranking.items.iter().filter(|i| i.dropped == Some(true)).count()
        };
        assert_eq!(count(0.1, 4), 0);
        assert_eq!(count(0.125, 4), 1);
        assert_eq!(count(0.99, 4), 4);
    }
}
