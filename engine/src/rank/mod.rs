//! Ranking from comparisons: Plackett-Luce / Bradley-Terry with soft stage outcomes, a Gaussian
//! prior, optional slot bias, and standard errors.

mod curvature;
mod fit;
mod graph;
mod observations;
mod pass;
mod ranking;
mod records;

pub use curvature::EXACT_MAX_ITEMS;
pub use fit::{fit, fit_from, log_likelihood_of, Fit, FitOptions, Prior, SlotBias, DEFAULT_PRIOR_PRECISION};
pub use graph::main_component;
pub use observations::{ObservationError, Observations, SlotKey};
pub use ranking::{RankedItem, Ranking, StopReason};
pub use records::{parse_comparisons, ComparisonRecord, ComparisonSet, RecordError};
