//! One ranking job as a state machine: the driver (CLI or service) asks for the next round of
//! groups, sends them to a comparator however it likes, records the answers, and asks for the
//! ranking at any point. Keeping the loop here means every driver ranks the same way.
//!
//! The first round is random. Each later round refits the model, starting from the last round's
//! fit ([`crate::rank::fit_from`]), and, when `adaptive`, groups the items that the fit cannot
//! yet separate (see [`crate::schedule`]). The job stops when its budget of calls is spent, when
//! the ranking stopped moving (the last round changed it by less than `stop_tolerance`), or, in
//! top-k and threshold modes, when no item's side of the cut is in doubt.
//! [`Ranking::stop_reason`] says which.

use std::collections::HashMap;

use crate::compare::GroupOutcome;
use crate::rank::{fit_from, Fit, FitOptions, ObservationError, Observations, Ranking, StopReason};
use crate::schedule::{calls_for_budget, Group, Mode, Planner};

/// How a comparison job spends its budget and fits its answers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Comparator calls per image.
    pub budget_calls_per_image: f64,
    /// Seed of the group plan, so a job can be replayed.
    pub seed: u64,
    pub fit: FitOptions,
    pub mode: Mode,
    /// Group close, uncertain items after the first round, rather than random ones.
    pub adaptive: bool,
    /// Stop early once a round moves the ranking by less than this: the mean rank change as a
    /// fraction of N in full mode, the mean change of the cut probability otherwise. 0 disables.
    pub stop_tolerance: f64,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            budget_calls_per_image: 3.0,
            seed: 0x5eed,
            fit: FitOptions {
                fit_slot_bias: true,
                ..FitOptions::default()
            },
            mode: Mode::Full,
            adaptive: true,
            stop_tolerance: 0.002,
        }
    }
}

/// A comparison job over `names.len()` images.
#[derive(Debug, Clone)]
pub struct Job {
    names: Vec<String>,
    observations: Observations,
    planner: Planner,
    calls_planned: usize,
    calls_budget: usize,
    rounds: usize,
    /// What the previous round's fit said, to measure how much the next one moves it.
    last_summary: Option<Vec<f64>>,
    /// The previous round's fit, where the next fit starts.
    last_fit: Option<Fit>,
    stopped: Option<StopReason>,
    options: JobOptions,
}

impl Job {
    pub fn new(names: Vec<String>, options: JobOptions) -> Self {
        let n = names.len();
        Self {
            observations: Observations::new(n),
            planner: Planner::new(n, options.seed),
            calls_planned: 0,
            calls_budget: calls_for_budget(n, options.budget_calls_per_image),
            rounds: 0,
            last_summary: None,
            last_fit: None,
            stopped: None,
            names,
            options,
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The most calls this job will make.
    pub fn calls_budget(&self) -> usize {
        self.calls_budget
    }

    /// Calls planned so far.
    pub fn calls_planned(&self) -> usize {
        self.calls_planned
    }

    /// Why the job stopped, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stopped
    }

    /// The next groups to ask about, or an empty list once the job has stopped.
    pub fn next_round(&mut self) -> Vec<Group> {
        if self.stopped.is_some() {
            return Vec::new();
        }
        let left = self.calls_budget - self.calls_planned;
        if left == 0 {
            self.stopped = Some(StopReason::Budget);
            return Vec::new();
        }
        let mut groups = if self.rounds == 0 {
            self.planner.random_round()
        } else {
            self.later_round()
        };
        if self.stopped.is_some() {
            return Vec::new();
        }
        groups.truncate(left);
        self.calls_planned += groups.len();
        self.rounds += 1;
        groups
    }

    fn later_round(&mut self) -> Vec<Group> {
        let fitted = self.fit();
        let groups = self.plan(&fitted);
        self.last_fit = Some(fitted);
        groups
    }

    /// The next round given the current fit; empty, with the reason set, once the job stops.
    fn plan(&mut self, fitted: &Fit) -> Vec<Group> {
        let summary = self.summary(fitted);
        if let Some(previous) = &self.last_summary {
            let change = summary.iter().zip(previous).map(|(a, b)| (a - b).abs()).sum::<f64>() / summary.len() as f64;
            if change < self.options.stop_tolerance {
                self.stopped = Some(StopReason::Stable);
                return Vec::new();
            }
        }
        self.last_summary = Some(summary);
        if !self.options.adaptive {
            return self.planner.random_round();
        }
        let appearances: Vec<u32> = self.planner.slot_counts().iter().map(|c| c.iter().sum()).collect();
        let active = self.planning_mode().active_items(fitted, &appearances);
        if active.len() < 2 {
            self.stopped = Some(StopReason::Settled);
            return Vec::new();
        }
        self.planner
            .adaptive_round(&fitted.scores, &fitted.own_std_errors, &active)
    }

    /// The job's mode as rounds are planned: full mode when the cut decides nothing
    /// ([`Mode::for_planning`]).
    fn planning_mode(&self) -> Mode {
        self.options.mode.for_planning(self.names.len())
    }

    /// Normalised ranks (full mode) or cut probabilities (top-k, threshold) of a fit.
    fn summary(&self, fitted: &Fit) -> Vec<f64> {
        if let Some(probs) = self
            .planning_mode()
            .probabilities(&fitted.scores, &fitted.relative_std_errors)
        {
            return probs;
        }
        let n = fitted.scores.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| fitted.scores[b].total_cmp(&fitted.scores[a]));
        let mut ranks = vec![0.0; n];
        order
            .iter()
            .enumerate()
            .for_each(|(rank, &i)| ranks[i] = rank as f64 / n as f64);
        ranks
    }

    /// Record a comparator's answer for `group`.
    pub fn record(&mut self, group: &Group, outcome: &GroupOutcome) -> Result<(), ObservationError> {
        self.observations.push_outcome(&group.items, outcome)
    }

    /// The answers so far.
    pub fn observations(&self) -> &Observations {
        &self.observations
    }

    /// Fit the answers so far, starting from the last round's fit.
    pub fn fit(&self) -> Fit {
        fit_from(&self.observations, &self.options.fit, self.last_fit.as_ref())
    }

    /// The ranking given the answers so far, with the cut probabilities of the job's mode.
    pub fn ranking(&self) -> Ranking {
        self.ranking_from(&self.fit())
    }

    /// [`Job::ranking`] from a fit of this job's answers that the caller already has.
    pub fn ranking_from(&self, fitted: &Fit) -> Ranking {
        let mut ranking = Ranking::from_fit(&self.names, fitted);
        ranking.stop_reason = self.stopped;
        if let Some(probs) =
            self.options
                .mode
                .reported_probabilities(&fitted.scores, &fitted.relative_std_errors, self.options.seed)
        {
            let index: HashMap<&str, usize> = self.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
            for item in &mut ranking.items {
                let p = Some(probs[index[item.name.as_str()]]);
                match self.options.mode {
                    Mode::TopK { .. } => item.p_top_k = p,
                    Mode::Threshold { .. } => item.p_dropped = p,
                    Mode::Full => {}
                }
            }
        }
        ranking
    }
}
