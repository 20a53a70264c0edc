//! One ranking job as a state machine: the driver (CLI or service) asks for the next round of
//! groups, sends them to a comparator however it likes, records the answers, and asks for the
//! ranking at any point. Keeping the loop here means every driver ranks the same way.

use crate::compare::GroupOutcome;
use crate::rank::{fit, FitOptions, ObservationError, Observations, Ranking};
use crate::schedule::{calls_for_budget, Group, RandomRounds};

/// How a comparison job spends its budget and fits its answers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Comparator calls per image.
    pub budget_calls_per_image: f64,
    /// Seed of the group plan, so a job can be replayed.
    pub seed: u64,
    pub fit: FitOptions,
}

impl Default for JobOptions {
    fn default() -> Self {
        Self {
            budget_calls_per_image: 3.0,
            seed: 0x5eed,
            fit: FitOptions::default(),
        }
    }
}

/// A comparison job over `names.len()` images.
#[derive(Debug, Clone)]
pub struct Job {
    names: Vec<String>,
    observations: Observations,
    rounds: RandomRounds,
    calls_planned: usize,
    calls_budget: usize,
    options: JobOptions,
}

impl Job {
    pub fn new(names: Vec<String>, options: JobOptions) -> Self {
        let n = names.len();
        Self {
            observations: Observations::new(n),
            rounds: RandomRounds::new(n, options.seed),
            calls_planned: 0,
            calls_budget: calls_for_budget(n, options.budget_calls_per_image),
            names,
            options,
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Total calls this job will make.
    pub fn calls_budget(&self) -> usize {
        self.calls_budget
    }

    /// The next groups to ask about, or an empty list once the budget is spent.
    pub fn next_round(&mut self) -> Vec<Group> {
        let left = self.calls_budget - self.calls_planned;
        let mut groups = self.rounds.next_round();
        groups.truncate(left);
        self.calls_planned += groups.len();
        groups
    }

    /// Record a comparator's answer for `group`.
    pub fn record(&mut self, group: &Group, outcome: &GroupOutcome) -> Result<(), ObservationError> {
        self.observations.push_outcome(&group.items, outcome)
    }

    /// The ranking given the answers so far.
    pub fn ranking(&self) -> Ranking {
        Ranking::from_fit(&self.names, &fit(&self.observations, &self.options.fit))
    }
}
