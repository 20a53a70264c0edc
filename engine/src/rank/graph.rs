//! Connectivity of the comparison graph. Items outside its largest connected part cannot be
//! placed relative to the rest by the data; they are still ranked (through the prior) but flagged.

use super::observations::Observations;

/// The connected parts of the comparison graph.
#[derive(Debug, Clone)]
pub(crate) struct Components {
    /// Part of each item; `None` for an item that was never compared.
    pub part: Vec<Option<u32>>,
    pub num_parts: usize,
}

impl Components {
    pub fn of(obs: &Observations) -> Self {
        let n = obs.num_items();
        let mut parent: Vec<u32> = (0..n as u32).collect();
        let mut compared = vec![false; n];
        for stage in obs.stages() {
            if let Some((&first, rest)) = stage.items.split_first() {
                compared[first as usize] = true;
                for &other in rest {
                    compared[other as usize] = true;
                    union(&mut parent, first, other);
                }
            }
        }
        let mut label = vec![u32::MAX; n];
        let mut num_parts = 0;
        let part = (0..n as u32)
            .map(|item| {
                if !compared[item as usize] {
                    return None;
                }
                let root = find(&mut parent, item) as usize;
                if label[root] == u32::MAX {
                    label[root] = num_parts;
                    num_parts += 1;
                }
                Some(label[root])
            })
            .collect();
        Self {
            part,
            num_parts: num_parts as usize,
        }
    }

    /// For each item, whether it belongs to the largest part.
    pub fn in_largest(&self) -> Vec<bool> {
        let mut size = vec![0usize; self.num_parts];
        self.part.iter().flatten().for_each(|&p| size[p as usize] += 1);
        let largest = (0..self.num_parts).max_by_key(|&p| (size[p], std::cmp::Reverse(p)));
        self.part
            .iter()
            .map(|&p| p.is_some() && p.map(|p| p as usize) == largest)
            .collect()
    }
}

/// For each item, whether it belongs to the largest connected part of the comparison graph.
/// An item that was never compared is in no part.
pub fn main_component(obs: &Observations) -> Vec<bool> {
    Components::of(obs).in_largest()
}

fn find(parent: &mut [u32], mut x: u32) -> u32 {
    while parent[x as usize] != x {
        let grandparent = parent[parent[x as usize] as usize];
        parent[x as usize] = grandparent; // path halving keeps the trees flat
        x = grandparent;
    }
    x
}

fn union(parent: &mut [u32], a: u32, b: u32) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb) as usize] = ra.min(rb);
    }
}
