//! One ranking run for the command line, on the service's actors: the same lister, loaders,
//! inference worker, scheduler, ranker and job coordinator that `qrank serve` runs, started in
//! process without a broker. The coordinator hands its report back here instead of publishing
//! it, so the CLI and the service rank the same way through one pipeline.
//!
//! A comparator that scores images one at a time is asked once per image as it loads. One that
//! only compares keeps each image in its prepared form (in memory up to `--image-memory-mib`,
//! then on disk: `crate::prepared`), and the engine's `Job` plans the groups
//! and fits the answers.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use engine::compare::{CacheStats, Comparator, Criterion};
use engine::image::Limits;
use engine::job::JobOptions;
use engine::rank::Ranking;
use ractor::Actor;
use tokio::sync::oneshot;

use crate::actors::coordinator::{self, Coordinator, CoordinatorMsg, Reply};
use crate::actors::supervisor::{self, Supervisor};
use crate::config::Config;
use crate::prepared::ImageMemory;
use crate::service::metrics::Metrics;
use crate::service::wire::{JobSpec, Selection};
use crate::service::Context;
use crate::source::Source;

/// An image that could not be used, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileError {
    pub name: String,
    /// A fixed label: empty, unsupported, truncated, over_limit, corrupt, fetch or model.
    pub kind: &'static str,
    pub reason: String,
}

/// Counts of the work done.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub num_images: usize,
    pub num_model_calls: usize,
    pub seconds: f64,
    /// The comparator's cache of per-image work over the run, as the inference worker recorded
    /// it in the metrics (a CLI run has its own); only for comparators that keep one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_cache: Option<CacheStats>,
    /// Images that waited on disk between rounds, past `--image-memory-mib`.
    pub images_on_disk: u64,
}

/// What a run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub model: String,
    pub ranking: Ranking,
    pub errors: Vec<FileError>,
    pub stats: Stats,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub recursive: bool,
    pub concurrency: usize,
    /// Memory for the images a comparing job keeps between rounds; past it they wait on disk
    /// (`crate::prepared`).
    pub image_memory_mib: u64,
    pub limits: Limits,
    pub job: JobOptions,
    /// What a comparator is asked about each group.
    pub criterion: Criterion,
}

/// Progress callbacks, so the CLI can draw bars and the service can count.
pub trait Progress: Send + Sync {
    fn loaded(&self, name: &str);
    fn comparisons_planned(&self, total: usize);
    fn compared(&self);
}

/// Rank every image under `source` with `comparator`.
pub async fn run(
    source: &Source,
    comparator: Arc<dyn Comparator>,
    options: &RunOptions,
    progress: Arc<dyn Progress>,
) -> Result<Report> {
    let mut config = Config::default();
    config.pipeline.num_loaders = options.concurrency.max(1);
    config.pipeline.max_images_in_flight = 2 * options.concurrency.max(1);
    config.pipeline.max_image_bytes = options.limits.max_bytes;
    config.pipeline.max_image_pixels = options.limits.max_pixels;
    config.pipeline.prepared_memory_mib = options.image_memory_mib;
    // The service's guard against a job pointed at a whole bucket; here the user chose the folder.
    config.pipeline.max_images_per_job = u64::MAX;
    let keeps_a_cache = comparator.cache_stats().is_some();
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let ctx = Context {
        image_memory: Arc::new(ImageMemory::from_config(&config.pipeline, &metrics)),
        config: Arc::new(config),
        metrics: metrics.clone(),
        health: Arc::default(),
        comparator,
        shared_groups: Arc::default(),
    };
    let (supervisor, supervisor_done) = Actor::spawn(
        None,
        Supervisor,
        supervisor::Arguments {
            ctx: ctx.clone(),
            with_broker: false,
        },
    )
    .await
    .context("starting the pipeline")?;
    let spec = JobSpec {
        job_id: "cli".into(),
        source: source.clone(),
        keys: Vec::new(),
        recursive: options.recursive,
        criterion: options.criterion.clone(),
        options: options.job.clone(),
        selection: Selection::All,
        output: None,
        reply_routing_key: String::new(),
        progress_routing_key: None,
    };
    let (report, reported) = oneshot::channel();
    let arguments = coordinator::Arguments {
        ctx,
        spec,
        reply: Reply::Local { report, progress },
    };
    let (coordinator, _) = Actor::spawn(None, Coordinator, arguments)
        .await
        .context("starting the job")?;
    coordinator.cast(CoordinatorMsg::Start)?;
    let report = reported.await.context("the job stopped without a report");
    supervisor.stop_children(None);
    supervisor.stop(None);
    let _ = supervisor_done.await;
    let mut report = report?.map_err(|e| anyhow::anyhow!(e).context(format!("ranking {}", source.url())))?;
    if keeps_a_cache {
        report.stats.embedding_cache = Some(CacheStats {
            hits: metrics.embedding_cache_hits.get(),
            misses: metrics.embedding_cache_misses.get(),
            bytes: u64::try_from(metrics.embedding_cache_bytes.get()).unwrap_or(0),
        });
    }
    report.stats.images_on_disk = metrics.prepared_images_spilled.get();
    Ok(report)
}
