//! The service's actors, one file per role. A job flows through them in this order:
//!
//! ```text
//! job_source (AMQP consumer) -> coordinator (one per job, owns the job's progress)
//!     -> lister (one per job, streams the listing in batches)
//!     -> loader pool (fetch, decode, prepare)
//!     -> inference worker (bounded queue; scores images or compares groups, on its own threads)
//!     -> scheduler (one per job, owns the engine's Job: which groups to ask next)
//!     -> ranker (fits the ranking off the async threads)
//!     -> publisher (result with publisher confirms) -> ack
//! ```
//!
//! A job too large for one replica shares its groups (`service::shared_groups`): its
//! coordinator publishes them to a work queue instead of the inference worker, and the
//! group server of every replica judges them and answers.
//!
//! The supervisor owns the long-lived actors (publisher, ranker, inference worker, loaders, group
//! server, job source), restarts any that crashes and counts it. Long-lived actors are found by their
//! registered name, so a restarted one is reached without telling anyone its new address.
//! A failure inside one job never makes a handler return `Err`: it becomes a message back to
//! the job's coordinator, a metric, and an error in the job's result.

pub mod coordinator;
pub mod group_server;
pub mod inference;
pub mod job_source;
pub mod lister;
pub mod loader;
pub mod publisher;
pub mod ranker;
pub mod scheduler;
pub mod supervisor;

use ractor::{ActorRef, Message};

pub const PUBLISHER: &str = "qrank.publisher";
pub const RANKER: &str = "qrank.ranker";
pub const INFERENCE: &str = "qrank.inference";
pub const JOB_SOURCE: &str = "qrank.job_source";
pub const GROUP_SERVER: &str = "qrank.group_server";

pub fn loader_name(index: usize) -> String {
    format!("qrank.loader.{index}")
}

/// The running actor registered as `name`, if any.
pub fn lookup<M: Message>(name: &str) -> Option<ActorRef<M>> {
    ActorRef::where_is(name)
}
