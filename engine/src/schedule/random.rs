//! The planner, and its random rounds: each a random partition of the items into groups of up to 4
//! (sizes differ by at most one, so nobody is left in a group of 1), with slots rotated by
//! [`SlotBalancer`]. The first round of every job is random; a non-adaptive job uses only these.

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

use super::{Group, SlotBalancer};

/// Plans rounds of groups with rotated slots. Deterministic under a seed.
#[derive(Debug, Clone)]
pub struct Planner {
    pub(super) rng: StdRng,
    pub(super) slots: SlotBalancer,
}

impl Planner {
    pub fn new(num_items: usize, seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            slots: SlotBalancer::new(num_items),
        }
    }

    pub fn num_items(&self) -> usize {
        self.slots.num_items()
    }

    /// One round: every item appears in exactly one group.
    pub fn random_round(&mut self) -> Vec<Group> {
        let n = self.num_items();
        if n < 2 {
            return Vec::new();
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut self.rng);
        self.slots.groups_in_order(&order)
    }

    /// How often each item was shown in each slot so far.
    pub fn slot_counts(&self) -> &[[u32; super::MAX_GROUP]] {
        self.slots.counts()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{calls_for_budget, MAX_GROUP};

    #[test]
    fn every_item_once_per_round_in_groups_of_two_to_four() {
        for n in [2usize, 3, 5, 9, 10, 101] {
            let mut rounds = Planner::new(n, 7);
            let groups = rounds.random_round();
            let mut seen: Vec<u32> = groups.iter().flat_map(|g| g.items.clone()).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n as u32).collect::<Vec<_>>(), "n = {n}");
            assert!(
                groups.iter().all(|g| (2..=MAX_GROUP).contains(&g.items.len())),
                "n = {n}: {groups:?}"
            );
        }
    }

    #[test]
    fn slots_rotate_evenly() {
        let mut rounds = Planner::new(100, 3);
        for _ in 0..40 {
            rounds.random_round();
        }
        for counts in rounds.slot_counts() {
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(max - min <= 2, "uneven slots {counts:?}");
        }
    }

    #[test]
    fn same_seed_same_plan() {
        let plan = |seed| {
            (0..5)
                .map(|_| Planner::new(50, seed).random_round())
                .collect::<Vec<_>>()
        };
        assert_eq!(plan(11), plan(11));
        let mut a = Planner::new(50, 11);
        let mut b = Planner::new(50, 12);
        assert_ne!(a.random_round(), b.random_round());
    }

    #[test]
    fn budget_counts_calls_per_image() {
        assert_eq!(calls_for_budget(200, 2.5), 500);
        assert_eq!(calls_for_budget(1, 3.0), 0);
    }
}
