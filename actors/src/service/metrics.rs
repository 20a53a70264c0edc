//! The service's Prometheus metrics, in one registry served at `/metrics`.
//!
//! Names follow `qrank_<subsystem>_<name>_<unit>[_total]`. Labels come only from fixed sets
//! (outcome, error type, kind, actor role), never from a job id or a URL, so the number of
//! series stays bounded whatever the traffic. The same counters are what the integration tests
//! check against the work they submitted.
//!
//! A labelled series is exported at 0 from the start wherever its label values are known then
//! (here those of `metric_labels`, poison reasons and stop reasons; actors and devices where they
//! start): a counter that first appears at 1 shows no increase to `rate()` or `increase()`, so
//! the first poison job of a pod's life would not move the chart's alert on it.

pub use crate::service::metric_labels::{JobOutcome, Published, SharedAttempt, SharedServed};
use crate::service::wire::Poison;
use engine::compare::CacheStats;
use engine::rank::StopReason;
use prometheus::{
    exponential_buckets, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The bounds of the job-long histograms (time in the queue, time to finish): from 10 ms to a
/// day, at the round numbers an SRE sets thresholds at (the chart's `queueWaitSeconds` alert
/// among them), since a Co-Instruct job of thousands of images runs for hours on a CPU.
/// `histogram_quantile` cannot report more than the largest bound.
const JOB_SECONDS: [f64; 21] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
    14400.0, 28800.0, 86400.0,
];

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Job messages taken from the queue, poison ones included.
    pub jobs_received: IntCounter,
    /// Jobs finished, by `outcome` ([`JobOutcome`]); count one with [`Metrics::job_completed`].
    jobs_completed: IntCounterVec,
    /// Poison messages sent to the dead-letter exchange, by `error_type`.
    pub jobs_dead_lettered: IntCounterVec,
    pub jobs_in_flight: IntGauge,
    pub job_duration: Histogram,
    /// Comparison jobs, by what stopped their comparisons (`reason`): budget, stable or
    /// settled. Mostly `budget` means the budget binds; `settled` jobs saved calls.
    pub jobs_stopped: IntCounterVec,
    /// Time from the job message's `timestamp` property to its arrival here.
    pub job_queue_wait: Histogram,
    pub images_loaded: IntCounter,
    /// Images that could not be used, by `error_type`: the `ImageError.kind` labels, and fetch,
    /// list (an unreadable folder entry) and model.
    pub image_errors: IntCounterVec,
    pub image_fetch: Histogram,
    /// Comparator calls, by `kind` (score: one image; compare: a group) and `device`.
    pub inference_calls: IntCounterVec,
    /// Comparator calls that failed, by `kind` and `device`: a device whose failures climb while
    /// the others' do not is the one to look at.
    pub inference_failures: IntCounterVec,
    pub inference_call: HistogramVec,
    /// 1 while a device takes work, 0 once its model failed call after call
    /// (`device_health`), by `device`.
    pub inference_device_up: IntGaugeVec,
    pub inference_queue_depth: IntGauge,
    pub inference_batch_size: Histogram,
    /// The comparator's cache of per-image work (Co-Instruct's image tokens): images found in it,
    /// images worked out again, and the bytes it holds. A low hit rate with the cache full means
    /// `model.embedding_cache_mib` is smaller than the images in play.
    pub embedding_cache_hits: IntCounter,
    pub embedding_cache_misses: IntCounter,
    pub embedding_cache_bytes: IntGauge,
    /// Bytes of prepared images that comparing jobs keep between rounds, by `place`: memory (up
    /// to `pipeline.prepared_memory_mib`) or disk (in `pipeline.spill_dir`, past it).
    pub prepared_image_bytes: IntGaugeVec,
    /// Images that waited on disk because the memory for prepared images was full.
    pub prepared_images_spilled: IntCounter,
    /// Groups answered, and those whose answer came from a checkpoint instead.
    pub groups_answered: IntCounter,
    pub groups_resumed: IntCounter,
    pub ranker_fit: Histogram,
    /// Groups of this replica's jobs put on the shared queue, by `attempt` ([`SharedAttempt`]).
    /// Many `again` means answers are lost or replicas too slow for
    /// `scale.shared_group_timeout_secs`.
    shared_groups_published: IntCounterVec,
    /// Shared groups this replica took from the queue, by `outcome` ([`SharedServed`]).
    shared_groups_served: IntCounterVec,
    /// 1 while connected to the broker.
    pub amqp_connected: IntGauge,
    /// 1 while taking jobs (and shared groups) from the broker: 0 while disconnected, draining,
    /// or while the model fails on every device.
    pub amqp_consuming: IntGauge,
    pub amqp_reconnects: IntCounter,
    /// Messages published, by `outcome` ([`Published`]).
    amqp_published: IntCounterVec,
    /// Actors restarted by their supervisor after a crash, by `actor` role.
    pub actor_restarts: IntCounterVec,
    /// The last cache totals of each device's copy of the model (each keeps its own cache), by
    /// device index. Its lock is held while the cache metrics are brought forward, so that two
    /// threads do not both add the same difference.
    cache_totals: std::sync::Mutex<Vec<CacheStats>>,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> prometheus::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| -> prometheus::Result<Histogram> {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let seconds = |name: &str, help: &str| histogram(name, help, exponential_buckets(0.001, 4.0, 10)?);
        let job_seconds = |name: &str, help: &str| histogram(name, help, JOB_SECONDS.to_vec());
        let inference_call = HistogramVec::new(
            HistogramOpts::new("qrank_inference_call_seconds", "Time of one comparator call")
                .buckets(exponential_buckets(0.0005, 4.0, 10)?),
            &["kind", "device"],
        )?;
        registry.register(Box::new(inference_call.clone()))?;
        let inference_batch_size = histogram(
            "qrank_inference_batch_size",
            "Tasks an inference thread took at once",
            exponential_buckets(1.0, 2.0, 8)?,
        )?;
        let metrics = Self {
            jobs_received: counter("qrank_job_received_total", "Job messages taken from the queue")?,
            jobs_completed: counter_vec("qrank_job_completed_total", "Jobs finished, by outcome", &["outcome"])?,
            jobs_dead_lettered: counter_vec(
                "qrank_job_dead_lettered_total",
                "Poison job messages sent to the dead-letter exchange",
                &["error_type"],
            )?,
            jobs_in_flight: gauge("qrank_job_in_flight", "Jobs being worked on")?,
            job_duration: job_seconds("qrank_job_duration_seconds", "Time from taking a job to acking it")?,
            jobs_stopped: counter_vec(
                "qrank_job_stopped_total",
                "Comparison jobs, by what stopped their comparisons",
                &["reason"],
            )?,
            job_queue_wait: job_seconds("qrank_job_queue_wait_seconds", "Time a job waited in the queue")?,
            images_loaded: counter("qrank_image_loaded_total", "Images fetched and decoded")?,
            image_errors: counter_vec(
                "qrank_image_errors_total",
                "Images that could not be used",
                &["error_type"],
            )?,
            image_fetch: seconds("qrank_image_fetch_seconds", "Time to fetch one image")?,
            inference_calls: counter_vec("qrank_inference_calls_total", "Comparator calls", &["kind", "device"])?,
            inference_failures: counter_vec(
                "qrank_inference_failures_total",
                "Comparator calls that failed",
                &["kind", "device"],
            )?,
            inference_call,
            inference_queue_depth: gauge("qrank_inference_queue_depth", "Tasks waiting for the inference worker")?,
            inference_batch_size,
            embedding_cache_hits: counter(
                "qrank_embedding_cache_hits_total",
                "Images whose model input came from the comparator's cache",
            )?,
            embedding_cache_misses: counter(
                "qrank_embedding_cache_misses_total",
                "Images whose model input was worked out again (first seen, or evicted)",
            )?,
            embedding_cache_bytes: gauge("qrank_embedding_cache_bytes", "Bytes held by the comparator's cache")?,
            inference_device_up: gauge_vec(
                "qrank_inference_device_up",
                "1 while the device takes work, by device",
                &["device"],
            )?,
            prepared_image_bytes: gauge_vec(
                "qrank_prepared_image_bytes",
                "Bytes of prepared images kept by comparing jobs, by place",
                &["place"],
            )?,
            prepared_images_spilled: counter(
                "qrank_prepared_images_spilled_total",
                "Images that waited on disk because the memory for prepared images was full",
            )?,
            groups_answered: counter("qrank_ranker_groups_answered_total", "Groups answered")?,
            groups_resumed: counter(
                "qrank_ranker_groups_resumed_total",
                "Groups answered from a checkpoint instead of the comparator",
            )?,
            ranker_fit: seconds("qrank_ranker_fit_seconds", "Time of one ranking fit")?,
            shared_groups_published: counter_vec(
                "qrank_shared_groups_published_total",
                "Groups of this replica's jobs put on the shared queue, by attempt",
                &["attempt"],
            )?,
            shared_groups_served: counter_vec(
                "qrank_shared_groups_served_total",
                "Shared groups taken from the queue, by outcome",
                &["outcome"],
            )?,
            amqp_connected: gauge("qrank_amqp_connected", "1 while connected to the broker")?,
            amqp_consuming: gauge(
                "qrank_amqp_consuming",
                "1 while taking jobs from the broker; 0 while disconnected, draining, or the model fails on every device",
            )?,
            amqp_reconnects: counter("qrank_amqp_reconnects_total", "Connections to the broker lost")?,
            amqp_published: counter_vec(
                "qrank_amqp_published_total",
                "Messages published, by outcome",
                &["outcome"],
            )?,
            actor_restarts: counter_vec(
                "qrank_actor_restarts_total",
                "Actors restarted after a crash",
                &["actor"],
            )?,
            cache_totals: std::sync::Mutex::default(),
            registry,
        };
        let stop_reasons = StopReason::ALL.map(StopReason::label);
        for (vec, labels) in [
            (&metrics.jobs_completed, JobOutcome::LABELS),
            (&metrics.jobs_dead_lettered, Poison::LABELS.as_slice()),
            (&metrics.jobs_stopped, stop_reasons.as_slice()),
            (&metrics.amqp_published, Published::LABELS),
            (&metrics.shared_groups_published, SharedAttempt::LABELS),
            (&metrics.shared_groups_served, SharedServed::LABELS),
        ] {
            for label in labels {
                vec.with_label_values(&[label]);
            }
        }
        Ok(metrics)
    }

    /// Count a message published, confirmed by the broker or not.
    pub fn published(&self, outcome: Published) {
        self.amqp_published.with_label_values(&[outcome.label()]).inc();
    }

    /// Count a group of this replica's jobs put on the shared queue.
    pub fn shared_group_published(&self, attempt: SharedAttempt) {
        self.shared_groups_published.with_label_values(&[attempt.label()]).inc();
    }

    /// Count a shared group this replica took from the queue.
    pub fn shared_group_served(&self, outcome: SharedServed) {
        self.shared_groups_served.with_label_values(&[outcome.label()]).inc();
    }

    /// Count a job that ended with `outcome`.
    pub fn job_completed(&self, outcome: JobOutcome) {
        self.jobs_completed.with_label_values(&[outcome.label()]).inc();
    }

    /// Brings the cache metrics up to the running totals of the copy of the model on device
    /// `device` (an index into the process's devices), summed over the devices. Inference threads
    /// call it after each call; a device's totals only move forward, so a thread with older
    /// totals than another of the same device has already recorded changes nothing.
    pub fn observe_cache(&self, device: usize, stats: CacheStats) {
        let mut totals = self.cache_totals.lock().unwrap_or_else(|e| e.into_inner());
        if totals.len() <= device {
            totals.resize(device + 1, CacheStats::default());
        }
        let known = &mut totals[device];
        known.hits = known.hits.max(stats.hits);
        known.misses = known.misses.max(stats.misses);
        known.bytes = stats.bytes;
        let sum = |f: fn(&CacheStats) -> u64| totals.iter().map(f).sum::<u64>();
        let forward = |counter: &IntCounter, total: u64| counter.inc_by(total.saturating_sub(counter.get()));
        forward(&self.embedding_cache_hits, sum(|t| t.hits));
        forward(&self.embedding_cache_misses, sum(|t| t.misses));
        self.embedding_cache_bytes
            .set(i64::try_from(sum(|t| t.bytes)).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("the text encoder writes to a Vec");
        String::from_utf8(text).expect("the text encoder writes UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention() {
        let metrics = Metrics::new().unwrap();
        metrics.job_completed(JobOutcome::Ranked);
        let text = metrics.render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(name.starts_with("qrank_"), "{name}");
            if line.ends_with("counter") {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(
            text.contains("qrank_job_completed_total{outcome=\"ranked\"} 1"),
            "{text}"
        );
    }

    /// The chart's alerts take `increase()` or `rate()` of these: a series that first appeared
    /// at 1 would hide the first failed job, or the first poison job, from them.
    #[test]
    fn series_whose_labels_are_known_at_start_are_exported_at_zero() {
        let text = Metrics::new().unwrap().render();
        let stop_reasons = StopReason::ALL.map(StopReason::label);
        let series = [
            ("qrank_job_completed_total", "outcome", JobOutcome::LABELS),
            ("qrank_job_dead_lettered_total", "error_type", Poison::LABELS.as_slice()),
            ("qrank_job_stopped_total", "reason", stop_reasons.as_slice()),
            ("qrank_amqp_published_total", "outcome", Published::LABELS),
            ("qrank_shared_groups_published_total", "attempt", SharedAttempt::LABELS),
            ("qrank_shared_groups_served_total", "outcome", SharedServed::LABELS),
        ]
        .into_iter()
        .flat_map(|(name, key, values)| values.iter().map(move |v| format!("{name}{{{key}=\"{v}\"}} 0")));
        for line in series {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }

    /// A Co-Instruct job runs for hours on a CPU: its wait and its duration must be told apart
    /// at the scale of minutes to hours, not lumped in a last bucket of a few minutes.
    #[test]
    fn job_histograms_tell_minutes_from_hours() {
        let metrics = Metrics::new().unwrap();
        metrics.job_queue_wait.observe(1500.0);
        metrics.job_duration.observe(5.0 * 3600.0);
        let text = metrics.render();
        for line in [
            "qrank_job_queue_wait_seconds_bucket{le=\"1200\"} 0",
            "qrank_job_queue_wait_seconds_bucket{le=\"1800\"} 1",
            "qrank_job_duration_seconds_bucket{le=\"14400\"} 0",
            "qrank_job_duration_seconds_bucket{le=\"28800\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn cache_metrics_follow_the_comparators_totals() {
        let metrics = Metrics::new().unwrap();
        let stats = |hits, misses, bytes| CacheStats { hits, misses, bytes };
        metrics.observe_cache(0, stats(3, 4, 1000));
        metrics.observe_cache(0, stats(10, 5, 1500));
        // Totals read by a slower thread before the last ones do not move the counters back.
        metrics.observe_cache(0, stats(9, 5, 1500));
        // A second device's copy has a cache of its own: the metrics are the sums.
        metrics.observe_cache(1, stats(2, 7, 500));
        let text = metrics.render();
        for line in [
            "qrank_embedding_cache_hits_total 12",
            "qrank_embedding_cache_misses_total 12",
            "qrank_embedding_cache_bytes 2000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
    }

    /// The chart's README lists every metric, so that an SRE reading it sees all there is.
    #[test]
    fn every_metric_is_in_the_chart_readme() {
        let metrics = Metrics::new().unwrap();
        // A labelled metric is exported only once it has a series.
        for vec in [
            &metrics.jobs_completed,
            &metrics.jobs_dead_lettered,
            &metrics.jobs_stopped,
            &metrics.image_errors,
            &metrics.amqp_published,
            &metrics.actor_restarts,
            &metrics.shared_groups_published,
            &metrics.shared_groups_served,
        ] {
            vec.with_label_values(&["x"]).inc();
        }
        metrics.prepared_image_bytes.with_label_values(&["x"]).set(1);
        metrics.inference_device_up.with_label_values(&["x"]).set(1);
        metrics.inference_calls.with_label_values(&["x", "y"]).inc();
        metrics.inference_failures.with_label_values(&["x", "y"]).inc();
        metrics.inference_call.with_label_values(&["x", "y"]).observe(1.0);
        let readme_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../helm/qrank/README.md");
        let readme = std::fs::read_to_string(readme_path).unwrap();
        let text = metrics.render();
        let names: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(|l| l.split_whitespace().nth(2).unwrap())
            .collect();
        assert_eq!(
            names.len(),
            31,
            "a new metric? list it in helm/qrank/README.tmpl.md, and above if it has labels: {names:?}"
        );
        for name in names {
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} is not in the chart README"
            );
        }
    }
}
