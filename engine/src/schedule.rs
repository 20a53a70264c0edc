//! Which groups to ask the comparator about.
//!
//! A round is a random partition of the items into groups of up to 4 (sizes differ by at most
//! one, so nobody is left in a group of 1). Within each group the slots are assigned so that every
//! item is shown in every position about equally often: comparators favour some positions, and
//! rotating them keeps that bias from landing on the same items.
//!
//! The budget counts model calls per image: with N images and a budget of b, the job makes
//! `ceil(b * N)` calls, so every image appears in about `4b` groups.

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};

/// The largest group a comparator is asked about.
pub const MAX_GROUP: usize = 4;

/// A group in the slot order to show it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub items: Vec<u32>,
}

/// Total comparator calls that a budget of `calls_per_image` allows for `num_items` images.
pub fn calls_for_budget(num_items: usize, calls_per_image: f64) -> usize {
    if num_items < 2 {
        return 0;
    }
    (calls_per_image.max(0.0) * num_items as f64).ceil() as usize
}

/// Rounds of random groups with rotated slots. Deterministic under a seed.
#[derive(Debug, Clone)]
pub struct RandomRounds {
    rng: StdRng,
    /// How often each item has been shown in each slot.
    slot_counts: Vec<[u32; MAX_GROUP]>,
}

impl RandomRounds {
    pub fn new(num_items: usize, seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            slot_counts: vec![[0; MAX_GROUP]; num_items],
        }
    }

    pub fn num_items(&self) -> usize {
        self.slot_counts.len()
    }

    /// One round: every item appears in exactly one group.
    pub fn next_round(&mut self) -> Vec<Group> {
        let n = self.num_items();
        if n < 2 {
            return Vec::new();
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.shuffle(&mut self.rng);
        let num_groups = n.div_ceil(MAX_GROUP);
        let (base, extra) = (n / num_groups, n % num_groups);
        let mut groups = Vec::with_capacity(num_groups);
        let mut start = 0;
        for g in 0..num_groups {
            let len = base + usize::from(g < extra);
            let members = &order[start..start + len];
            start += len;
            groups.push(Group {
                items: self.assign_slots(members),
            });
        }
        groups
    }

    /// Order `members` so that each takes the slot it has been shown in least.
    fn assign_slots(&mut self, members: &[u32]) -> Vec<u32> {
        let mut best: Option<(u32, Vec<u32>)> = None;
        for_each_permutation(members.to_vec(), &mut |perm: &[u32]| {
            let cost: u32 = perm
                .iter()
                .enumerate()
                .map(|(slot, &item)| self.slot_counts[item as usize][slot])
                .sum();
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, perm.to_vec()));
            }
        });
        let (_, order) = best.unwrap_or_default();
        for (slot, &item) in order.iter().enumerate() {
            self.slot_counts[item as usize][slot] += 1;
        }
        order
    }

    /// How often each item was shown in each slot so far.
    pub fn slot_counts(&self) -> &[[u32; MAX_GROUP]] {
        &self.slot_counts
    }
}

/// Heap's algorithm over at most 4 elements (24 orders).
fn for_each_permutation(mut items: Vec<u32>, visit: &mut impl FnMut(&[u32])) {
    fn heap(k: usize, items: &mut [u32], visit: &mut impl FnMut(&[u32])) {
        if k <= 1 {
            visit(items);
            return;
        }
        for i in 0..k {
            heap(k - 1, items, visit);
            let j = if k % 2 == 0 { i } else { 0 };
            if i + 1 < k {
                items.swap(j, k - 1);
            }
        }
    }
    let k = items.len();
    heap(k, &mut items, visit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_once_per_round_in_groups_of_two_to_four() {
        for n in [2usize, 3, 5, 9, 10, 101] {
            let mut rounds = RandomRounds::new(n, 7);
            let groups = rounds.next_round();
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
        let mut rounds = RandomRounds::new(100, 3);
        for _ in 0..40 {
            rounds.next_round();
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
                .map(|_| RandomRounds::new(50, seed).next_round())
                .collect::<Vec<_>>()
        };
        assert_eq!(plan(11), plan(11));
        let mut a = RandomRounds::new(50, 11);
        let mut b = RandomRounds::new(50, 12);
        assert_ne!(a.next_round(), b.next_round());
    }

    #[test]
    fn budget_counts_calls_per_image() {
        assert_eq!(calls_for_budget(200, 2.5), 500);
        assert_eq!(calls_for_budget(1, 3.0), 0);
    }
}
