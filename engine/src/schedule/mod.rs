//! Which groups to ask the comparator about.
//!
//! A comparator call on a group of up to 4 is the expensive unit, so the plan decides how much
//! ranking each call buys. The [`Planner`]'s first round is random; later rounds are adaptive:
//! they group items whose current scores are close and uncertain. [`focus`] picks who takes part:
//! in full mode the items whose rank is least certain for the comparisons they have had, in
//! top-k or threshold mode the items near the cut.
//! Slots are rotated so that every item is shown in every position about equally often:
//! comparators favour some positions, and rotating keeps that bias off the same items (the fit
//! estimates and removes what remains).
//!
//! The budget counts model calls per image: with N images and a budget of b, a job makes at most
//! `ceil(b * N)` calls, so every image appears in about `4b` groups.

mod adaptive;
pub mod focus;
mod membership;
mod random;

pub(crate) use adaptive::standard_normal;
pub use focus::Mode;
pub use random::Planner;

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

/// Tracks how often each item was shown in each slot, and orders new groups to even that out.
#[derive(Debug, Clone)]
pub struct SlotBalancer {
    counts: Vec<[u32; MAX_GROUP]>,
}

impl SlotBalancer {
    pub fn new(num_items: usize) -> Self {
        Self {
            counts: vec![[0; MAX_GROUP]; num_items],
        }
    }

    pub fn num_items(&self) -> usize {
        self.counts.len()
    }

    pub fn counts(&self) -> &[[u32; MAX_GROUP]] {
        &self.counts
    }

    /// Cut `order` into consecutive groups of 2..=4 whose sizes differ by at most one, and
    /// assign each group's slots.
    pub fn groups_in_order(&mut self, order: &[u32]) -> Vec<Group> {
        let n = order.len();
        if n < 2 {
            return Vec::new();
        }
        let num_groups = n.div_ceil(MAX_GROUP);
        let (base, extra) = (n / num_groups, n % num_groups);
        let mut groups = Vec::with_capacity(num_groups);
        let mut start = 0;
        for g in 0..num_groups {
            let len = base + usize::from(g < extra);
            groups.push(Group {
                items: self.assign_slots(&order[start..start + len]),
            });
            start += len;
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
                .map(|(slot, &item)| self.counts[item as usize][slot])
                .sum();
            if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                best = Some((cost, perm.to_vec()));
            }
        });
        let (_, order) = best.unwrap_or_default();
        for (slot, &item) in order.iter().enumerate() {
            self.counts[item as usize][slot] += 1;
        }
        order
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
            let j = if k.is_multiple_of(2) { i } else { 0 };
            if i + 1 < k {
                items.swap(j, k - 1);
            }
        }
    }
    let k = items.len();
    heap(k, &mut items, visit);
}
