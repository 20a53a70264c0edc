//! One pass over the observations at given strengths: the sums every step of the fit needs.
//!
//! Memory access dominates a large fit. Ten million stages over a million items mean forty million
//! reads of item strengths and forty million additions into per-item sums, all at random places;
//! done naively the additions miss the cache almost every time. So a pass has two halves:
//! 1. stage by stage, in parallel, each stage's total strength `D_s`: reads only, which the CPU
//!    overlaps freely;
//! 2. block by block of items, in parallel, the per-item sums over the stages an item is in, from
//!    an index built once per fit that lists each block's candidates in stage order. One block's
//!    sums ([`BLOCK_ITEMS`] of them) stay in a core's L2 cache while its candidates stream past.
//!
//! Every sum is taken in a fixed order (stages in order, chunks combined in order), whatever the
//! thread count, so fits are bit-identical on every machine; the adaptive plan sorts by them.

use rayon::prelude::*;

use super::fit::{key_index, NUM_KEYS};
use super::observations::{Observations, StageView};

/// Items per block: 64 Ki sums of 8 bytes, half of a 1 MiB L2 cache.
const BLOCK_ITEMS: usize = 1 << 16;
/// Stages per parallel chunk in the first half.
const STAGE_CHUNK: usize = 1 << 16;
/// Stage totals multiplied together before one logarithm is taken. A total lies within
/// `e^+-55` (scores stay within +-50, slot biases are small), so a product of four stays far
/// inside the range of f64, and three of every four logarithms are saved.
const LOG_BATCH: usize = 4;

/// One candidate, filed under its item's block: the stage it is in, and its item (within the
/// block, low 16 bits) with its slot key (high bits).
#[derive(Debug, Clone, Copy)]
struct Entry {
    stage: u32,
    item_and_key: u32,
}

/// Each block's candidates in stage order, built once per fit.
#[derive(Debug)]
pub(crate) struct CandidateIndex {
    entries: Vec<Entry>,
    /// Block `b` owns `entries[block_start[b]..block_start[b + 1]]`.
    block_start: Vec<usize>,
}

impl CandidateIndex {
    pub fn of(obs: &Observations) -> Self {
        let num_blocks = obs.num_items().div_ceil(BLOCK_ITEMS);
        let mut block_start = vec![0usize; num_blocks + 1];
        for stage in obs.stages() {
            for &item in stage.items {
                block_start[item as usize / BLOCK_ITEMS + 1] += 1;
            }
        }
        for b in 0..num_blocks {
            block_start[b + 1] += block_start[b];
        }
        let mut next = block_start.clone();
        let mut entries = vec![
            Entry {
                stage: 0,
                item_and_key: 0
            };
            block_start[num_blocks]
        ];
        for (s, stage) in obs.stages().enumerate() {
            for (&item, &slot) in stage.items.iter().zip(stage.slots) {
                let block = item as usize / BLOCK_ITEMS;
                let key = key_index(stage.group_size, slot) as u32;
                entries[next[block]] = Entry {
                    stage: s as u32,
                    item_and_key: (item % BLOCK_ITEMS as u32) | key << 16,
                };
                next[block] += 1;
            }
        }
        Self { entries, block_start }
    }

    fn block(&self, b: usize) -> &[Entry] {
        &self.entries[self.block_start[b]..self.block_start[b + 1]]
    }
}

/// What a pass computes beyond the MM denominators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// `sum_s ln D_s`, for the log-posterior.
    pub log_totals: bool,
    /// Per item, `sum_s (e^beta / D_s)^2`, for the curvature.
    pub squares: bool,
}

/// The sums of one pass, in buffers reused from pass to pass.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Per stage, `1 / D_s`.
    inv_totals: Vec<f64>,
    /// Per item, `sum over its stages of e^beta_slot / D_s`: the MM denominator. An item's
    /// expected number of wins is its strength times this.
    pub denominators: Vec<f64>,
    /// Per item, `sum over its stages of (e^beta_slot / D_s)^2`; empty unless asked for.
    pub squares: Vec<f64>,
    /// `sum_s ln D_s`; NaN unless asked for.
    pub log_totals: f64,
}

impl Pass {
    pub fn run(
        &mut self,
        obs: &Observations,
        index: &CandidateIndex,
        strength: &[f64],
        exp_beta: &[f64; NUM_KEYS],
        wanted: Wanted,
    ) {
        self.inv_totals.resize(obs.num_stages(), 0.0);
        let log_chunks: Vec<f64> = self
            .inv_totals
            .par_chunks_mut(STAGE_CHUNK)
            .enumerate()
            .map(|(c, out)| {
                let (mut log_sum, mut product) = (0.0, 1.0);
                for (k, inv) in out.iter_mut().enumerate() {
                    let total = stage_total(&obs.stage(c * STAGE_CHUNK + k), strength, exp_beta);
                    *inv = 1.0 / total;
                    if wanted.log_totals {
                        product *= total;
                        if k % LOG_BATCH == LOG_BATCH - 1 {
                            log_sum += product.ln();
                            product = 1.0;
                        }
                    }
                }
                log_sum + product.ln()
            })
            .collect();
        self.log_totals = if wanted.log_totals {
            log_chunks.iter().sum()
        } else {
            f64::NAN
        };

        let n = obs.num_items();
        self.denominators.resize(n, 0.0);
        self.squares.resize(if wanted.squares { n } else { 0 }, 0.0);
        let inv_totals = &self.inv_totals;
        let block_sums = |(b, denominators): (usize, &mut [f64]), squares: Option<&mut [f64]>| {
            denominators.fill(0.0);
            let entries = index.block(b);
            match squares {
                None => {
                    for e in entries {
                        let weight = exp_beta[(e.item_and_key >> 16) as usize] * inv_totals[e.stage as usize];
                        denominators[(e.item_and_key & 0xFFFF) as usize] += weight;
                    }
                }
                Some(squares) => {
                    squares.fill(0.0);
                    for e in entries {
                        let weight = exp_beta[(e.item_and_key >> 16) as usize] * inv_totals[e.stage as usize];
                        let local = (e.item_and_key & 0xFFFF) as usize;
                        denominators[local] += weight;
                        squares[local] += weight * weight;
                    }
                }
            }
        };
        let blocks = self.denominators.par_chunks_mut(BLOCK_ITEMS).enumerate();
        if wanted.squares {
            blocks
                .zip(self.squares.par_chunks_mut(BLOCK_ITEMS))
                .for_each(|(block, squares)| block_sums(block, Some(squares)));
        } else {
            blocks.for_each(|block| block_sums(block, None));
        }
    }
}

pub(crate) fn stage_total(stage: &StageView<'_>, strength: &[f64], exp_beta: &[f64; NUM_KEYS]) -> f64 {
    stage
        .items
        .iter()
        .zip(stage.slots)
        .map(|(&item, &slot)| strength[item as usize] * exp_beta[key_index(stage.group_size, slot)])
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked pass must equal the plain definition, across block boundaries.
    #[test]
    fn pass_matches_the_definition_across_blocks() {
        let n = BLOCK_ITEMS * 2 + 10;
        let mut obs = Observations::new(n);
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for _ in 0..5_000 {
            let (a, b, c) = (next() % n, next() % n, next() % n);
            if a != b && b != c && a != c {
                obs.push_choice(a as u32, &[b as u32, c as u32]).unwrap();
            }
        }
        // Items at both ends of the last, partial block, and one in the first.
        obs.push_choice(n as u32 - 1, &[(BLOCK_ITEMS * 2) as u32, 3]).unwrap();
        let strength: Vec<f64> = (0..n).map(|i| 0.5 + (i % 7) as f64 * 0.3).collect();
        let mut exp_beta = [1.0; NUM_KEYS];
        exp_beta[key_index(3, 1)] = 1.4;
        let mut pass = Pass::default();
        let wanted = Wanted {
            log_totals: true,
            squares: true,
        };
        pass.run(&obs, &CandidateIndex::of(&obs), &strength, &exp_beta, wanted);

        let mut denominators = vec![0.0; n];
        let mut squares = vec![0.0; n];
        let mut log_totals = 0.0;
        for stage in obs.stages() {
            let total = stage_total(&stage, &strength, &exp_beta);
            log_totals += total.ln();
            for (&item, &slot) in stage.items.iter().zip(stage.slots) {
                let weight = exp_beta[key_index(stage.group_size, slot)] / total;
                denominators[item as usize] += weight;
                squares[item as usize] += weight * weight;
            }
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * (1.0 + b.abs());
        assert!(close(pass.log_totals, log_totals));
        assert!(pass.denominators.iter().zip(&denominators).all(|(&a, &b)| close(a, b)));
        assert!(pass.squares.iter().zip(&squares).all(|(&a, &b)| close(a, b)));
        assert!(denominators[n - 1] > 0.0 && pass.denominators[n - 1] > 0.0);
    }
}
