//! qrank's engine: everything that decides a ranking, with no I/O runtime.
//!
//! The service and the CLI (in `actors`) feed it bytes and drive it; the engine never touches a
//! network, a runtime or a clock. That keeps the ranking reproducible and the tests fast.
//!
//! - [`image`]: decode, orient, limit and convert images to RGB.
//! - [`compare`]: the [`compare::Comparator`] trait and what goes in and out of it.
//! - [`classical`]: BRISQUE and NIQE, no-reference metrics with published parameters.
//! - [`rank`]: the Plackett-Luce / Bradley-Terry fit with a Gaussian prior.
//! - [`schedule`]: which groups to ask the comparator about next.
//! - [`job`]: one ranking job as a state machine that the CLI and the service drive.
//! - [`simulate`]: a comparator that knows the truth, for tests and benchmarks only.
//! - [`agreement`]: rank correlations and top-fraction precision against a truth.

pub mod agreement;
pub mod classical;
pub mod compare;
pub mod image;
pub mod job;
pub mod logistic;
#[cfg(feature = "coinstruct")]
pub mod model;
pub mod rank;
pub mod schedule;
pub mod simulate;
