//! `qrank serve`: the pieces of the service that are not actors. The actors themselves live in
//! `crate::actors`; this module gives them their shared context, the broker connection, the wire
//! format, the job's output prefix, the metrics and the HTTP probes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::Config;
use crate::models::Comparators;
use crate::prepared::ImageMemory;

pub mod broker;
pub mod dead_letter;
pub mod device_health;
pub mod http;
pub mod job_output;
pub mod metric_labels;
pub mod metrics;
pub mod run;
pub mod shared_groups;
pub mod wire;
pub mod work_queue;

/// What every actor of the service shares.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub metrics: Arc<metrics::Metrics>,
    pub health: Arc<Health>,
    /// The model, a copy on each device.
    pub comparators: Comparators,
    /// Where answers to shared groups come back, and who waits for them.
    pub shared_groups: Arc<shared_groups::SharedGroups>,
    /// The memory the jobs' prepared images share, and the disk past it.
    pub image_memory: Arc<ImageMemory>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("model", &self.comparators.primary().model_id())
            .field("devices", &self.comparators.device_names())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// True when a job should rank by comparing groups rather than by scoring single images.
    pub fn compares_groups(&self) -> bool {
        self.config.model.compare_groups || !self.comparators.primary().scores_directly()
    }
}

/// What `/readyz` reports: ready while connected to the broker, the model is loaded and the
/// service is not draining.
#[derive(Debug, Default)]
pub struct Health {
    pub broker_connected: AtomicBool,
    pub model_loaded: AtomicBool,
    /// True while the model fails call after call on every device (`device_health`):
    /// `/healthz` then fails, so that Kubernetes restarts the pod, and meanwhile the replica
    /// takes no jobs or shared groups (`broker`), which wait in their queues for a working one.
    /// A watch, so that the broker connection hears when it changes.
    pub model_broken: tokio::sync::watch::Sender<bool>,
    pub draining: AtomicBool,
}

impl Health {
    pub fn ready(&self) -> bool {
        self.broker_connected.load(Ordering::Relaxed)
            && self.model_loaded.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && self.alive()
    }

    /// What `/healthz` reports: false only while the model is broken on every device.
    pub fn alive(&self) -> bool {
        !*self.model_broken.borrow()
    }

    /// Record whether the model is broken on every device; watchers wake only on a change.
    pub fn set_model_broken(&self, broken: bool) {
        self.model_broken
            .send_if_modified(|was| std::mem::replace(was, broken) != broken);
    }
}
