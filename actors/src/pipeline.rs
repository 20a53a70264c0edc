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
use engine::compare::{CacheStats, Criterion};
use engine::image::Limits;
use engine::job::JobOptions;
use engine::rank::Ranking;
use ractor::Actor;
use tokio::sync::oneshot;

use crate::actors::coordinator::{self, Coordinator, CoordinatorMsg, Reply};
use crate::actors::supervisor::{self, Supervisor};
use crate::config::Config;
use crate::models::Comparators;
use crate::prepared::ImageMemory;
use crate::service::job_output::JobOutput;
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
    /// Groups answered from a checkpoint (`--resume`) instead of the model.
    pub num_groups_resumed: usize,
    pub seconds: f64,
    /// The comparator's cache of per-image work over the run, as the inference worker recorded
    /// it in the metrics (a CLI run has its own); only for comparators that keep one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding_cache: Option<CacheStats>,
    /// Images that waited on disk between rounds, past `--image-memory-mib`.
    pub images_on_disk: u64,
    /// The precision of the model's weights (`--precision` as resolved), for models that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
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
    /// Where answers are checkpointed and taken up again (`--resume`).
    pub checkpoint: Option<JobOutput>,
}

/// A command-line run saves its answers (`--resume`) at the first answer this many seconds after
/// the last save, besides every 64 answers and every round: a call of Co-Instruct on a laptop's
/// CPU takes seconds or more, so each answer is then saved as it comes, while on a GPU, at a
/// twentieth of a second a call, the parts stay few.
const CHECKPOINT_EVERY_SECS: u64 = 5;

/// A run stopped by Ctrl-C, with what became of its answers.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Interrupted(pub String);

/// Progress callbacks, so the CLI can draw bars and the service can count.
pub trait Progress: Send + Sync {
    fn loaded(&self, name: &str);
    fn comparisons_planned(&self, total: usize);
    fn compared(&self);
    /// A checkpoint was read: `reused` answers of this model to this question, and `ignored`
    /// answers of another model or to another question.
    fn resumed(&self, reused: usize, ignored: usize);
}

/// Rank every image under `source` with the model in `comparators`. When `stop` completes first
/// (Ctrl-C, for the command line), the run saves its answers (with `--resume`) and ends in
/// [`Interrupted`].
pub async fn run(
    source: &Source,
    comparators: Comparators,
    options: &RunOptions,
    progress: Arc<dyn Progress>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Report> {
    let mut config = Config::default();
    config.pipeline.num_loaders = options.concurrency.max(1);
    config.pipeline.max_images_in_flight = 2 * options.concurrency.max(1);
    config.pipeline.max_image_bytes = options.limits.max_bytes;
    config.pipeline.max_image_pixels = options.limits.max_pixels;
    config.pipeline.prepared_memory_mib = options.image_memory_mib;
    // The service's guard against a job pointed at a whole bucket; here the user chose the folder.
    config.pipeline.max_images_per_job = u64::MAX;
    config.pipeline.checkpoint_every_secs = CHECKPOINT_EVERY_SECS;
    let keeps_a_cache = comparators.primary().cache_stats().is_some();
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let ctx = Context {
        image_memory: Arc::new(ImageMemory::from_config(&config.pipeline, &metrics)),
        config: Arc::new(config),
        metrics: metrics.clone(),
        health: Arc::default(),
        comparators,
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
        output: options.checkpoint.clone(),
        reply_routing_key: String::new(),
        progress_routing_key: None,
    };
    let (report, mut reported) = oneshot::channel();
    let arguments = coordinator::Arguments {
        ctx,
        spec,
        reply: Reply::Local { report, progress },
    };
    let (coordinator, _) = Actor::spawn(None, Coordinator, arguments)
        .await
        .context("starting the job")?;
    coordinator.cast(CoordinatorMsg::Start)?;
    let (report, interrupted) = tokio::select! {
        report = &mut reported => (report, false),
        () = stop => {
            let _ = coordinator.cast(CoordinatorMsg::Interrupt);
            (reported.await, true)
        }
    };
    supervisor.stop_children(None);
    supervisor.stop(None);
    let _ = supervisor_done.await;
    let mut report = match report.context("the job stopped without a report")? {
        Err(reason) if interrupted => return Err(Interrupted(reason).into()),
        report => report.map_err(|e| anyhow::anyhow!(e).context(format!("ranking {}", source.url())))?,
    };
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use engine::compare::{Comparator, CompareError, GroupOutcome, Stage};
    use engine::image::Image;

    use super::*;
    use crate::models::OnDevice;

    /// A fake device, since this machine has no GPU: it answers each group with the images'
    /// order by mean brightness, taking a few milliseconds as a model call would, and counts
    /// the groups it judged.
    #[derive(Default)]
    struct FakeDevice {
        groups: AtomicUsize,
    }

    impl Comparator for FakeDevice {
        fn model_id(&self) -> String {
            "fake-brightness".into()
        }

        fn compare(&self, group: &[&Image], _criterion: &Criterion) -> Result<GroupOutcome, CompareError> {
            std::thread::sleep(Duration::from_millis(5));
            self.groups.fetch_add(1, Ordering::Relaxed);
            let brightness = |image: &Image| {
                let values = image.rgb.as_raw();
                values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64
            };
            let mut left: Vec<u8> = (0..group.len() as u8).collect();
            let mut stages = Vec::new();
            while left.len() > 1 {
                let best = (0..left.len())
                    .max_by(|&a, &b| {
                        brightness(group[left[a] as usize]).total_cmp(&brightness(group[left[b] as usize]))
                    })
                    .expect("two or more slots are left");
                let probs = (0..left.len()).map(|k| f64::from(u8::from(k == best))).collect();
                stages.push(Stage {
                    slots: left.clone(),
                    probs,
                });
                left.remove(best);
            }
            Ok(GroupOutcome { stages })
        }
    }

    struct Quiet;

    impl Progress for Quiet {
        fn loaded(&self, _name: &str) {}
        fn comparisons_planned(&self, _total: usize) {}
        fn compared(&self) {}
        fn resumed(&self, _reused: usize, _ignored: usize) {}
    }

    /// Rank the example photos with one copy of the model per fake device. One pipeline at a
    /// time: its actors' names are registered process-wide, and `cargo test` runs tests as
    /// threads of one process.
    fn rank_on(devices: &[Arc<dyn Comparator>]) -> Result<Report> {
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let copies = devices
            .iter()
            .enumerate()
            .map(|(n, device)| OnDevice {
                device: format!("fake:{n}"),
                comparator: device.clone(),
            })
            .collect();
        let options = RunOptions {
            recursive: false,
            concurrency: 2,
            image_memory_mib: 512,
            limits: Limits::default(),
            job: JobOptions {
                budget_calls_per_image: 2.0,
                ..JobOptions::default()
            },
            criterion: Criterion::Overall,
            checkpoint: None,
        };
        let photos = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/photos");
        let source = Source::open(photos).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let never = std::future::pending();
        runtime.block_on(run(&source, Comparators::new(copies), &options, Arc::new(Quiet), never))
    }

    /// Two devices share the groups of one job, and the ranking is the one a single device gives.
    #[test]
    fn every_device_takes_groups_from_the_one_queue() {
        let alone = rank_on(&[Arc::new(FakeDevice::default())]).unwrap();
        let two = [Arc::new(FakeDevice::default()), Arc::new(FakeDevice::default())];
        let shared = rank_on(&[two[0].clone(), two[1].clone()]).unwrap();
        let judged: Vec<usize> = two.iter().map(|d| d.groups.load(Ordering::Relaxed)).collect();
        assert!(judged.iter().all(|&n| n > 0), "a device sat idle: {judged:?}");
        assert_eq!(judged.iter().sum::<usize>(), shared.stats.num_model_calls);
        assert_eq!(alone.stats.num_model_calls, shared.stats.num_model_calls);
        let names = |report: &Report| -> Vec<String> { report.ranking.items.iter().map(|i| i.name.clone()).collect() };
        assert_eq!(names(&alone), names(&shared));
        for (a, b) in alone.ranking.items.iter().zip(&shared.ranking.items) {
            // The answers come back in another order, so the fits stop at another point within
            // the solver's tolerance.
            assert!(
                (a.score - b.score).abs() < 1e-4,
                "{}: {} against {}",
                a.name,
                a.score,
                b.score
            );
        }
    }

    /// A fake of a GPU fallen off the bus: the same model as [`FakeDevice`], whose every call
    /// fails, and is counted.
    #[derive(Default)]
    struct BrokenDevice {
        calls: AtomicUsize,
    }

    impl Comparator for BrokenDevice {
        fn model_id(&self) -> String {
            "fake-brightness".into()
        }

        fn compare(&self, _group: &[&Image], _criterion: &Criterion) -> Result<GroupOutcome, CompareError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            Err(CompareError::Model("CUDA_ERROR_ILLEGAL_ADDRESS".into()))
        }
    }

    /// A job whose comparisons all fail ends in an error that says so, not in a ranking fitted
    /// to no answers.
    #[test]
    fn a_model_that_fails_every_group_fails_the_job() {
        let err = format!("{:#}", rank_on(&[Arc::new(BrokenDevice::default())]).unwrap_err());
        assert!(
            err.contains("the model failed on 8 of 8 groups") && err.contains("CUDA_ERROR_ILLEGAL_ADDRESS"),
            "{err}"
        );
    }

    /// Beside a working device, a broken one is retired after a few failures and the job is
    /// ranked by the other, nothing handed back lost.
    #[test]
    fn a_broken_device_is_retired_and_the_others_finish_the_job() {
        let (broken, working) = (Arc::new(BrokenDevice::default()), Arc::new(FakeDevice::default()));
        let report = rank_on(&[broken.clone(), working.clone()]).unwrap();
        let failed = broken.calls.load(Ordering::Relaxed);
        assert_eq!(failed, crate::service::device_health::SICK_AFTER as usize);
        let answered = working.groups.load(Ordering::Relaxed);
        assert_eq!(answered + failed, report.stats.num_model_calls);
        assert_eq!(report.ranking.items.len(), 20);
        assert!(report.ranking.items.iter().all(|item| item.connected));
    }
}
