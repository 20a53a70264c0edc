//! The Plackett-Luce fit: maximise the likelihood of soft stage outcomes under a Gaussian prior,
//! by minorisation-maximisation (Hunter, 2004).
//!
//! A stage with candidates `C` and target distribution `p` contributes
//! `sum_i p_i (theta_i + beta_slot(i)) - log sum_j exp(theta_j + beta_slot(j))`,
//! where `beta` is the optional bias of a slot (position in the group). A pair, a best-of-group
//! answer and each step of a full ranking are all stages, and soft `p` keeps the comparator's
//! confidence. The prior `-lambda/2 * |theta|^2` ranks items the data says nothing about, and
//! pins the scale, so items in separate parts of the comparison graph still get a score.
//!
//! Each MM iteration is one pass over the candidates ([`super::pass`]): O(observations), with no
//! N x N matrix. The minorised objective separates by item, so every item update is a 1-D Newton
//! solve. The same pass yields the log-posterior at its starting point, which the acceleration
//! needs, so that costs no pass of its own.
//!
//! MM alone is slow along one direction: shifting all scores of a connected part changes the
//! likelihood not at all and the prior only a little, while the minorising bound is as steep there
//! as anywhere else. So after each MM step we take the exact optimum along those directions, which
//! is to centre each connected part's scores on zero. That step can only raise the objective, and
//! it turns thousands of iterations into tens.

use rayon::prelude::*;

use super::curvature::{diagonal_standard_errors, exact_standard_errors, StandardErrors};
use super::graph::Components;
use super::observations::{Observations, SlotKey, StageView};
use super::pass::{stage_total, CandidateIndex, Pass, Wanted};

/// Slot keys index a small table: group sizes up to 4, slots 0..4, then one key shared by every
/// slot of a larger group. Comparators see groups of up to 4; larger ones come only from saved
/// reference data (choix's top-1 choices among many, or long rankings), where no slot bias is
/// fitted: their key's bias stays 0.
const MAX_GROUP: usize = 4;
const UNBIASED_KEY: usize = (MAX_GROUP + 1) * MAX_GROUP;
pub(crate) const NUM_KEYS: usize = UNBIASED_KEY + 1;

pub(crate) fn key_index(group_size: u8, slot: u8) -> usize {
    if usize::from(group_size) > MAX_GROUP {
        return UNBIASED_KEY;
    }
    usize::from(group_size) * MAX_GROUP + usize::from(slot)
}

/// What keeps scores finite and places items the data cannot place.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Prior {
    /// A Gaussian prior with this precision (1 / variance) on every score. Precision 0 gives the
    /// maximum-likelihood fit, which exists only when the comparison graph is strongly connected.
    Gaussian { precision: f64 },
    /// The regularisation of the Python library choix's ILSR solvers: a Markov-chain rate `alpha`
    /// between every pair of items. It has no likelihood of its own; it is here so that fits of
    /// reference data made with choix can be reproduced exactly. The fixed point it defines is
    /// `wins_i - w_i c_i + alpha (sum_j w_j - N w_i) = 0` with the weights `w` scaled to mean 1.
    ChoixAlpha { alpha: f64 },
}

impl Prior {
    /// The precision used for standard errors.
    fn curvature(self) -> f64 {
        match self {
            Self::Gaussian { precision } => precision.max(0.0),
            Self::ChoixAlpha { alpha } => alpha.max(0.0),
        }
    }
}

/// How to fit.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitOptions {
    pub prior: Prior,
    /// Fit one bias per (group size, slot), with slot 0 as the reference, jointly with the scores.
    pub fit_slot_bias: bool,
    pub max_iterations: usize,
    /// Stop when no score moves by more than this in an iteration.
    pub tolerance: f64,
}

/// The default prior's precision: scores spread with a standard deviation of 2 in log-strength,
/// so an image one standard deviation better than another is picked over it about 7 times in 8. A
/// comparator of pair accuracy 0.80 on normally spread quality has a spread of 1.65 (precision
/// 0.37), so this prior is a little wider than that. Measured on the ranking bench against the
/// former 0.1: Spearman at 2.5 calls per image rose from 0.9501 to 0.9528 (N = 2,000, 10 seeds)
/// and from 0.9498 to 0.9523 (N = 20,000); the slot-bias error at 1 call per image fell from 0.093
/// to 0.069. A prior much wider than the real spread lets items seen once or twice take extreme
/// scores, which the slot biases and the cut probabilities then absorb.
pub const DEFAULT_PRIOR_PRECISION: f64 = 0.25;

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            prior: Prior::Gaussian {
                precision: DEFAULT_PRIOR_PRECISION,
            },
            fit_slot_bias: false,
            max_iterations: 2_000,
            tolerance: 1e-6,
        }
    }
}

/// The estimated advantage of being shown in a slot, relative to slot 0 of the same group size.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SlotBias {
    pub group_size: u8,
    pub slot: u8,
    /// Log-odds added to an item shown in this slot.
    pub bias: f64,
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Log-strength of each item; higher is better.
    pub scores: Vec<f64>,
    /// Standard error of each score, from the curvature of the log-posterior at the optimum.
    pub std_errors: Vec<f64>,
    /// Standard error of each score minus the mean score: the part of the error that can change
    /// the order. It leaves out the uncertainty of the overall level, which every item shares
    /// (see `curvature.rs`). Equal to `std_errors` above [`super::EXACT_MAX_ITEMS`] items.
    pub relative_std_errors: Vec<f64>,
    /// The error each item's own comparisons leave, as if every other score were known:
    /// `1 / sqrt(H_ii)` (see `curvature.rs`). It is what one more comparison of the item
    /// improves, and it is computed the same way at every N, so the scheduler plans with it.
    /// Equal to `std_errors` above [`super::EXACT_MAX_ITEMS`] items, and smaller below.
    pub own_std_errors: Vec<f64>,
    /// False for items outside the largest connected part of the comparison graph: their place
    /// relative to the rest comes from the prior alone.
    pub connected: Vec<bool>,
    pub slot_bias: Vec<SlotBias>,
    pub iterations: usize,
    pub converged: bool,
    /// Log-likelihood of the data at the fit, without the prior.
    pub log_likelihood: f64,
}

/// Fit scores (and optionally slot biases) to `obs`.
///
/// The fit runs on a thread of rayon's pool, so that its many short parallel loops start from
/// there rather than each handing work over from the caller's thread.
pub fn fit(obs: &Observations, options: &FitOptions) -> Fit {
    fit_from(obs, options, None)
}

/// [`fit`], starting from an earlier fit of the same items rather than from zero.
///
/// A job refits after every round, and one round moves the optimum only a little, so starting
/// from the last fit saves steps: 39% to 45% of them in a top-k job at N = 2,000 to 20,000
/// (`examples/bench_refit.rs`). With the Gaussian prior the log-posterior is strictly concave,
/// so the optimum is the same; only where the solver stops within its tolerance can differ. An
/// earlier fit of another number of items is ignored.
pub fn fit_from(obs: &Observations, options: &FitOptions, start: Option<&Fit>) -> Fit {
    rayon::scope(|_| fit_in_pool(obs, options, start))
}

fn fit_in_pool(obs: &Observations, options: &FitOptions, start: Option<&Fit>) -> Fit {
    let (wins, slot_wins) = win_mass(obs);
    let mut problem = Problem {
        obs,
        options,
        lambda: options.prior.curvature(),
        wins,
        slot_wins,
        components: Components::of(obs),
        index: CandidateIndex::of(obs),
        pass: Pass::default(),
    };
    let start = start.filter(|fit| fit.scores.len() == obs.num_items());
    let mut theta = start.map_or_else(|| vec![0.0f64; obs.num_items()], |fit| fit.scores.clone());
    let mut beta = [0.0f64; NUM_KEYS];
    if options.fit_slot_bias {
        for bias in start.map_or(&[][..], |fit| &fit.slot_bias) {
            beta[key_index(bias.group_size, bias.slot)] = bias.bias;
        }
    }
    let mut iterations = 0;
    let mut converged = false;
    while iterations < options.max_iterations {
        let change = match options.prior {
            Prior::Gaussian { .. } => problem.squarem_cycle(&mut theta, &mut beta, &mut iterations),
            Prior::ChoixAlpha { .. } => {
                iterations += 1;
                problem.mm_step(&mut theta, &mut beta, false).change
            }
        };
        if change < options.tolerance {
            converged = true;
            break;
        }
    }
    // One last pass at the fit gives the log-likelihood and, for large problems, the curvature.
    let strength: Vec<f64> = theta.par_iter().map(|t| t.exp()).collect();
    let wanted = Wanted {
        log_totals: true,
        squares: true,
    };
    problem
        .pass
        .run(obs, &problem.index, &strength, &beta.map(f64::exp), wanted);
    let log_likelihood = problem.linear_term(&theta, &beta) - problem.pass.log_totals;
    let own = diagonal_standard_errors(&strength, &problem.pass, problem.lambda);
    let errors = exact_standard_errors(obs, &theta, &beta, problem.lambda).unwrap_or_else(|| {
        // The diagonal approximation has no shared level in it: all three errors are the same.
        StandardErrors {
            relative: own.clone(),
            absolute: own.clone(),
        }
    });
    Fit {
        log_likelihood,
        connected: problem.components.in_largest(),
        slot_bias: if options.fit_slot_bias {
            report_bias(obs, &beta)
        } else {
            Vec::new()
        },
        scores: theta,
        std_errors: errors.absolute,
        relative_std_errors: errors.relative,
        own_std_errors: own,
        iterations,
        converged,
    }
}

/// What stays fixed during a fit, and the pass's reused buffers.
struct Problem<'a> {
    obs: &'a Observations,
    options: &'a FitOptions,
    lambda: f64,
    /// Per item, its soft number of wins.
    wins: Vec<f64>,
    /// Per slot key, the soft number of wins of items shown there.
    slot_wins: [f64; NUM_KEYS],
    components: Components,
    index: CandidateIndex,
    pass: Pass,
}

/// The outcome of one MM step.
struct Step {
    /// The largest change of any parameter.
    change: f64,
    /// The log-posterior at the step's starting point; NaN unless asked for.
    objective: f64,
}

impl Problem<'_> {
    /// One MM step for the scores, then (optionally) for the slot biases.
    fn mm_step(&mut self, theta: &mut [f64], beta: &mut [f64; NUM_KEYS], want_objective: bool) -> Step {
        let n = theta.len();
        let mut strength: Vec<f64> = theta.par_iter().map(|t| t.exp()).collect();
        if let Prior::ChoixAlpha { .. } = self.options.prior {
            // choix scales weights to mean 1 before building its chain; alpha's pull depends on it.
            let scale = n as f64 / strength.iter().sum::<f64>();
            strength.iter_mut().for_each(|w| *w *= scale);
        }
        let wanted = Wanted {
            log_totals: want_objective,
            squares: false,
        };
        self.pass
            .run(self.obs, &self.index, &strength, &beta.map(f64::exp), wanted);
        let objective = if want_objective {
            self.linear_term(theta, beta)
                - self.pass.log_totals
                - self.lambda / 2.0 * ordered_sum(n, |i| theta[i] * theta[i])
        } else {
            f64::NAN
        };
        let denominators = &self.pass.denominators;
        let previous = theta.to_vec();
        match self.options.prior {
            Prior::Gaussian { .. } => {
                theta
                    .par_iter_mut()
                    .zip(&strength)
                    .zip(&self.wins)
                    .zip(denominators)
                    .for_each(|(((t, &e), &w), &c)| {
                        *t = solve_item(*t, e, w, c, self.lambda);
                    });
                centre_parts(theta, &self.components);
            }
            Prior::ChoixAlpha { alpha } => {
                // With weights of mean 1, alpha's rates to and from all N items add alpha * N to
                // both sides of the balance: w_i = (wins_i + alpha N) / (c_i + alpha N).
                let virtual_mass = alpha * n as f64;
                theta
                    .par_iter_mut()
                    .zip(&self.wins)
                    .zip(denominators)
                    .for_each(|((t, &w), &c)| {
                        *t = ((w + virtual_mass) / (c + virtual_mass)).max(1e-300).ln().max(-50.0);
                    });
                centre_all(theta);
            }
        }
        let mut change = theta
            .par_iter()
            .zip(&previous)
            .map(|(a, b)| (a - b).abs())
            .reduce(|| 0.0, f64::max);
        if self.options.fit_slot_bias {
            change = change.max(update_slot_bias(self.obs, theta, beta));
        }
        Step { change, objective }
    }

    /// The part of the log-likelihood linear in the parameters: `sum_s sum_i p_i (theta_i +
    /// beta_slot(i))`, from the win masses. The rest is `-sum_s ln D_s`, since every stage's
    /// probabilities sum to 1 (checked when recorded); scores stay within +-50, far from overflow.
    fn linear_term(&self, theta: &[f64], beta: &[f64; NUM_KEYS]) -> f64 {
        let items = ordered_sum(theta.len(), |i| theta[i] * self.wins[i]);
        items + beta.iter().zip(&self.slot_wins).map(|(b, w)| b * w).sum::<f64>()
    }

    /// One SQUAREM cycle (Varadhan and Roland, 2008): two MM steps give the direction and speed
    /// of convergence, an extrapolated point jumps ahead along them, and one more MM step from
    /// there stabilises it. The jump is kept only if its log-posterior is at least that of the
    /// cycle's start, so the fit stays monotone; otherwise the plain two-step MM result is kept.
    /// MM converges linearly and slowly on large sparse graphs; this cuts the passes over the
    /// data several times. Both log-posteriors come with the MM steps taken from those points.
    ///
    /// SQUAREM's jump uses one step length for all parameters, which suits a slow mode shared by
    /// the whole graph (the 1M-item fit). Sparse data also has slow modes of single items: an
    /// item that won all of its few comparisons is held only by the prior, and MM moves it by a
    /// factor of about its win probability (0.99) per step. One common step cannot serve both, so
    /// a coordinate that is converging monotonically (successive changes of one sign, shrinking)
    /// jumps to its own geometric limit instead (Aitken's delta-squared). On the N = 2,000
    /// benchmark this cut 98 MM steps to 59, and the 1M-item fit's 38 to 35.
    ///
    /// Returns the last step's change.
    fn squarem_cycle(&mut self, theta: &mut Vec<f64>, beta: &mut [f64; NUM_KEYS], iterations: &mut usize) -> f64 {
        let (theta0, beta0) = (theta.clone(), *beta);
        let start_objective = self.mm_step(theta, beta, true).objective;
        let (theta1, beta1) = (theta.clone(), *beta);
        let change = self.mm_step(theta, beta, false).change;
        *iterations += 2;
        if change < self.options.tolerance {
            return change;
        }
        // r = s1 - s0 and v = s2 - 2 s1 + s0, over scores and biases together.
        let r = |a: f64, b: f64| b - a;
        let v = |a: f64, b: f64, c: f64| c - 2.0 * b + a;
        let beta_r2: f64 = (0..NUM_KEYS).map(|k| r(beta0[k], beta1[k]).powi(2)).sum();
        let beta_v2: f64 = (0..NUM_KEYS).map(|k| v(beta0[k], beta1[k], beta[k]).powi(2)).sum();
        let r2 = ordered_sum(theta.len(), |i| r(theta0[i], theta1[i]).powi(2)) + beta_r2;
        let v2 = ordered_sum(theta.len(), |i| v(theta0[i], theta1[i], theta[i]).powi(2)) + beta_v2;
        let step = match -(r2 / v2).sqrt() {
            step if step < -1.0 && step.is_finite() => step,
            _ => -1.0, // no common acceleration to gain: the common jump is s2 itself
        };
        let jump = |s0: f64, s1: f64, s2: f64| {
            let (d1, d2) = (s1 - s0, s2 - s1);
            let rate = d2 / d1;
            if rate > 0.0 && rate < MAX_AITKEN_RATE {
                s2 + d2 * rate / (1.0 - rate) // this coordinate's own limit (Aitken)
            } else {
                s0 - 2.0 * step * d1 + step * step * (d2 - d1)
            }
        };
        let mut theta_jump: Vec<f64> = theta0
            .par_iter()
            .zip(&theta1)
            .zip(theta.par_iter())
            .map(|((&a, &b), &c)| jump(a, b, c))
            .collect();
        let mut beta_jump = [0.0; NUM_KEYS];
        for k in 0..NUM_KEYS {
            beta_jump[k] = jump(beta0[k], beta1[k], beta[k]);
        }
        let jump = self.mm_step(&mut theta_jump, &mut beta_jump, true);
        *iterations += 1;
        if jump.objective >= start_objective {
            *theta = theta_jump;
            *beta = beta_jump;
            return jump.change.max(change);
        }
        change
    }
}

/// Aitken's extrapolation is used for a coordinate whose changes shrink by a factor below this;
/// closer to 1 the estimated rate is too noisy to extrapolate far (1 / (1 - rate) steps ahead).
const MAX_AITKEN_RATE: f64 = 0.995;

/// Items per chunk of [`ordered_sum`].
const SUM_CHUNK: usize = 1 << 16;

/// `sum of f(i) over 0..len`, in parallel but in fixed chunks added in order, so that the result,
/// and every decision taken on it, is the same whatever the thread count.
fn ordered_sum(len: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    let chunks: Vec<f64> = (0..len.div_ceil(SUM_CHUNK))
        .into_par_iter()
        .map(|c| (c * SUM_CHUNK..((c + 1) * SUM_CHUNK).min(len)).map(&f).sum())
        .collect();
    chunks.iter().sum()
}

/// Centre all scores on zero, as choix does after each step.
fn centre_all(theta: &mut [f64]) {
    let mean = theta.iter().sum::<f64>() / theta.len().max(1) as f64;
    theta.iter_mut().for_each(|t| *t -= mean);
}

/// Centre each connected part's scores on zero: the likelihood cannot see a shift of a part, and
/// the prior is highest at mean zero. Never-compared items stay at the prior mean.
fn centre_parts(theta: &mut [f64], components: &Components) {
    let mut sum = vec![0.0f64; components.num_parts];
    let mut count = vec![0usize; components.num_parts];
    for (t, part) in theta.iter().zip(&components.part) {
        if let Some(p) = part {
            sum[*p as usize] += t;
            count[*p as usize] += 1;
        }
    }
    for (t, part) in theta.iter_mut().zip(&components.part) {
        if let Some(p) = part {
            *t -= sum[*p as usize] / count[*p as usize] as f64;
        }
    }
}

/// Total target probability each item received, its (soft) number of wins, and the same per
/// slot key.
fn win_mass(obs: &Observations) -> (Vec<f64>, [f64; NUM_KEYS]) {
    let mut wins = vec![0.0; obs.num_items()];
    let mut slot_wins = [0.0; NUM_KEYS];
    for stage in obs.stages() {
        for ((&item, &slot), &p) in stage.items.iter().zip(stage.slots).zip(stage.probs) {
            wins[item as usize] += f64::from(p);
            slot_wins[key_index(stage.group_size, slot)] += f64::from(p);
        }
    }
    (wins, slot_wins)
}

/// The stages split into a fixed number of contiguous chunks for a parallel sum. The split does
/// not depend on the thread count, and chunk results are combined in chunk order, so the sum is
/// the same on every machine.
const MAX_CHUNKS: usize = 8;
const MIN_CHUNK_STAGES: usize = 16_384;

fn stage_chunks(obs: &Observations) -> Vec<std::ops::Range<usize>> {
    let stages = obs.num_stages();
    let num_chunks = stages.div_ceil(MIN_CHUNK_STAGES).clamp(1, MAX_CHUNKS);
    let len = stages.div_ceil(num_chunks).max(1);
    (0..num_chunks).map(|c| c * len..((c + 1) * len).min(stages)).collect()
}

/// Maximise `w * t - c * exp(t) - lambda / 2 * t^2` over `t`, starting from `t0`, whose
/// exponential `e0` the pass has already computed.
fn solve_item(t0: f64, e0: f64, wins: f64, denom: f64, lambda: f64) -> f64 {
    if denom <= 0.0 {
        return t0; // never compared: keep the prior mean it started at
    }
    if lambda == 0.0 {
        // Closed form. An item that never won has no finite maximum-likelihood score; a floor
        // keeps the arithmetic finite and leaves it last.
        return (wins / denom).max(1e-300).ln().max(-50.0);
    }
    // f(t) = w - c e^t - lambda t is decreasing and concave: Newton from the right of the root
    // converges monotonically. t0 (the last iterate, usually close) is right of it when
    // f(t0) <= 0; otherwise ln(w/c), the root without the prior, is (for w > 0). From the left,
    // a step can overshoot by at most |t0| when w = 0, and then converges from the right.
    let (mut t, mut exp_t) = (t0, e0);
    if wins > 0.0 && wins - denom * e0 - lambda * t0 > 0.0 {
        t = t0.max((wins / denom).ln());
        exp_t = t.exp();
    }
    for _ in 0..50 {
        let e = denom * exp_t;
        let f = wins - e - lambda * t;
        let slope = e + lambda;
        let step = f / slope;
        t += step;
        if step.abs() < 1e-13 * (1.0 + t.abs()) {
            break;
        }
        exp_t = t.exp();
    }
    t
}

/// One MM step for the slot biases, with scores fixed. Returns the largest change.
fn update_slot_bias(obs: &Observations, theta: &[f64], beta: &mut [f64; NUM_KEYS]) -> f64 {
    let strength: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
    let exp_beta = beta.map(f64::exp);
    let mut wins = [0.0f64; NUM_KEYS];
    let mut denom = [0.0f64; NUM_KEYS];
    for stage in obs.stages() {
        let inv_total = 1.0 / stage_total(&stage, &strength, &exp_beta);
        for ((&item, &slot), &p) in stage.items.iter().zip(stage.slots).zip(stage.probs) {
            let k = key_index(stage.group_size, slot);
            wins[k] += f64::from(p);
            denom[k] += strength[item as usize] * inv_total;
        }
    }
    // Slot 0 of each size stays at 0 as the reference; the scores absorb any common shift.
    let mut change: f64 = 0.0;
    for size in 2..=MAX_GROUP as u8 {
        for slot in 1..size {
            let k = key_index(size, slot);
            if wins[k] > 0.0 && denom[k] > 0.0 {
                let next = (wins[k] / denom[k]).ln();
                change = change.max((next - beta[k]).abs());
                beta[k] = next;
            }
        }
    }
    change
}

fn report_bias(obs: &Observations, beta: &[f64; NUM_KEYS]) -> Vec<SlotBias> {
    let mut seen = std::collections::BTreeSet::new();
    for stage in obs.stages().filter(|stage| usize::from(stage.group_size) <= MAX_GROUP) {
        for &slot in stage.slots {
            seen.insert(SlotKey {
                group_size: stage.group_size,
                slot,
            });
        }
    }
    seen.into_iter()
        .map(|k| SlotBias {
            group_size: k.group_size,
            slot: k.slot,
            bias: beta[key_index(k.group_size, k.slot)],
        })
        .collect()
}

/// Log-likelihood of `obs` under scores `theta` and slot biases `beta`, without the prior.
fn log_likelihood(obs: &Observations, theta: &[f64], beta: &[f64; NUM_KEYS]) -> f64 {
    let per_chunk: Vec<f64> = stage_chunks(obs)
        .into_par_iter()
        .map(|range| {
            range
                .map(|s| stage_log_likelihood(obs.stage(s), theta, beta))
                .sum::<f64>()
        })
        .collect();
    per_chunk.into_iter().sum()
}

fn stage_log_likelihood(stage: StageView<'_>, theta: &[f64], beta: &[f64; NUM_KEYS]) -> f64 {
    let utility = |(&item, &slot): (&u32, &u8)| theta[item as usize] + beta[key_index(stage.group_size, slot)];
    let candidates = || stage.items.iter().zip(stage.slots);
    let max = candidates().map(utility).fold(f64::NEG_INFINITY, f64::max);
    let log_total = max + candidates().map(|c| (utility(c) - max).exp()).sum::<f64>().ln();
    candidates()
        .zip(stage.probs)
        .map(|(c, &p)| f64::from(p) * (utility(c) - log_total))
        .sum()
}

/// Log-likelihood of `scores` with no slot bias: for comparing fits from other tools.
pub fn log_likelihood_of(obs: &Observations, scores: &[f64]) -> f64 {
    log_likelihood(obs, scores, &[0.0; NUM_KEYS])
}
