//! Comparison outcomes in a flat, cache-friendly layout.
//!
//! A fit over ten million observations walks this storage dozens of times, so every stage lives in
//! a few parallel arrays rather than in a vector per group: one entry per candidate (item, slot,
//! target probability), and one offset per stage.

use crate::compare::GroupOutcome;

/// Where in the group a candidate was shown, and the group size: the key of a slot-bias parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub group_size: u8,
    pub slot: u8,
}

/// Stage-wise soft outcomes over items numbered `0..num_items`.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    num_items: usize,
    /// Stage `s` owns candidates `stage_start[s]..stage_start[s + 1]`.
    stage_start: Vec<u32>,
    /// Size of the group each stage came from, for slot-bias keys.
    stage_group_size: Vec<u8>,
    cand_item: Vec<u32>,
    cand_slot: Vec<u8>,
    cand_prob: Vec<f32>,
}

/// Why an outcome could not be recorded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObservationError {
    #[error("item {item} is outside 0..{num_items}")]
    UnknownItem { item: u32, num_items: usize },
    #[error("stage names slot {slot} but the group has {group_size} images")]
    UnknownSlot { slot: u8, group_size: usize },
    #[error("stage has {slots} slots but {probs} probabilities")]
    Mismatch { slots: usize, probs: usize },
    #[error("stage probabilities must be finite, non-negative and sum to 1 (sum {sum})")]
    BadProbabilities { sum: f64 },
    #[error("a group holds an item twice")]
    Repeated,
    #[error("a group holds {size} items; at most {} are supported", u8::MAX)]
    TooLarge { size: usize },
}

impl Observations {
    pub fn new(num_items: usize) -> Self {
        Self {
            num_items,
            stage_start: vec![0],
            ..Self::default()
        }
    }

    pub fn num_items(&self) -> usize {
        self.num_items
    }

    pub fn num_stages(&self) -> usize {
        self.stage_start.len().saturating_sub(1)
    }

    /// Grow the item space, e.g. when a saved comparison names an item not seen before.
    pub fn ensure_items(&mut self, num_items: usize) {
        self.num_items = self.num_items.max(num_items);
    }

    /// Record a group's answer. `items` are in the slot order the comparator saw.
    pub fn push_outcome(&mut self, items: &[u32], outcome: &GroupOutcome) -> Result<(), ObservationError> {
        self.validate(items, outcome)?;
        for stage in &outcome.stages {
            for (&slot, &prob) in stage.slots.iter().zip(&stage.probs) {
                self.cand_item.push(items[usize::from(slot)]);
                self.cand_slot.push(slot);
                self.cand_prob.push(prob as f32);
            }
            self.stage_group_size.push(items.len() as u8);
            self.stage_start.push(self.cand_item.len() as u32);
        }
        Ok(())
    }

    /// Record one hard stage: `winner` beat every item of `losers`. No slot information.
    pub fn push_choice(&mut self, winner: u32, losers: &[u32]) -> Result<(), ObservationError> {
        let items: Vec<u32> = std::iter::once(winner).chain(losers.iter().copied()).collect();
        let mut probs = vec![0.0; items.len()];
        probs[0] = 1.0;
        let slots = (0..items.len() as u8).collect();
        let outcome = GroupOutcome {
            stages: vec![crate::compare::Stage { slots, probs }],
        };
        self.push_outcome(&items, &outcome)
    }

    fn validate(&self, items: &[u32], outcome: &GroupOutcome) -> Result<(), ObservationError> {
        // Slots and group sizes are stored as bytes.
        if items.len() > usize::from(u8::MAX) {
            return Err(ObservationError::TooLarge { size: items.len() });
        }
        for (i, &item) in items.iter().enumerate() {
            if item as usize >= self.num_items {
                return Err(ObservationError::UnknownItem {
                    item,
                    num_items: self.num_items,
                });
            }
            if items[..i].contains(&item) {
                return Err(ObservationError::Repeated);
            }
        }
        for stage in &outcome.stages {
            if stage.slots.len() != stage.probs.len() {
                return Err(ObservationError::Mismatch {
                    slots: stage.slots.len(),
                    probs: stage.probs.len(),
                });
            }
            if let Some(&slot) = stage.slots.iter().find(|&&s| usize::from(s) >= items.len()) {
                return Err(ObservationError::UnknownSlot {
                    slot,
                    group_size: items.len(),
                });
            }
            let sum: f64 = stage.probs.iter().sum();
            let valid = stage.probs.iter().all(|p| p.is_finite() && *p >= 0.0);
            if !valid || (sum - 1.0).abs() > 1e-3 {
                return Err(ObservationError::BadProbabilities { sum });
            }
        }
        Ok(())
    }

    /// Iterate over stages as candidate ranges.
    pub(crate) fn stages(&self) -> impl Iterator<Item = StageView<'_>> + '_ {
        (0..self.num_stages()).map(|s| self.stage(s))
    }

    pub(crate) fn stage(&self, s: usize) -> StageView<'_> {
        let range = self.stage_start[s] as usize..self.stage_start[s + 1] as usize;
        StageView {
            group_size: self.stage_group_size[s],
            items: &self.cand_item[range.clone()],
            slots: &self.cand_slot[range.clone()],
            probs: &self.cand_prob[range],
        }
    }
}

/// One stage: its candidates' items, slots and target probabilities.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StageView<'a> {
    pub group_size: u8,
    pub items: &'a [u32],
    pub slots: &'a [u8],
    pub probs: &'a [f32],
}
