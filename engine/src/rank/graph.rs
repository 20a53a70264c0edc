//! Connectivity of the comparison graph. Items outside its largest connected part cannot be
//! placed relative to the rest by the data; they are still ranked (through the prior) but flagged.

use super::observations::Observations;

/// For each item, whether it belongs to the largest connected part of the comparison graph.
/// An item that was never compared is in no part.
pub fn main_component(obs: &Observations) -> Vec<bool> {
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
    let mut size = vec![0u32; n];
    for item in 0..n as u32 {
        if compared[item as usize] {
            size[find(&mut parent, item) as usize] += 1;
        }
    }
    let Some(largest) = (0..n).max_by_key(|&root| size[root]) else {
        return Vec::new();
    };
    if size[largest] == 0 {
        return vec![false; n];
    }
    (0..n as u32)
        .map(|item| compared[item as usize] && find(&mut parent, item) as usize == largest)
        .collect()
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
