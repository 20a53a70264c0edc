//! `qrank serve`'s configuration: one TOML file, every key overridable from the environment.
//!
//! The whole configuration lives in this one file, with a doc comment on every key, because the
//! Helm chart renders it and operators read it. A key `section.key` is overridden by the variable
//! `QRANK_<SECTION>__<KEY>` (upper case, two underscores between section and key), e.g.
//! `QRANK_AMQP__URL` or `QRANK_SHUTDOWN__GRACE_PERIOD_SECS=30`. The value is read as a TOML value
//! when it parses as one (numbers, booleans) and as a string otherwise. Variables starting with
//! `QRANK_` without a `__` (such as `QRANK_BIN`) are not configuration and are ignored; an
//! unknown section or key is an error, so a typo never silently falls back to a default.
//!
//! Everything is checked by [`Config::load`] before the service binds a port, so a bad value is
//! reported with exit code 64 and nothing half-starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The service's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub amqp: AmqpConfig,
    pub http: HttpConfig,
    pub model: ModelConfig,
    pub pipeline: PipelineConfig,
    pub scale: ScaleConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
}

/// The broker, and the names of the queues and exchanges (see `protos/README.md`).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// Broker URL, `amqp://user:password@host:port/vhost` or `amqps://` for TLS. It holds a
    /// password, so it is never logged; set it from a secret through `QRANK_AMQP__URL`.
    pub url: String,
    /// Direct exchange that jobs arrive on and results and progress leave by.
    pub exchange: String,
    /// Durable queue of `RankJob`s, bound to `exchange` with its own name as routing key.
    pub queue: String,
    /// Fanout exchange that poison messages go to, with the reason in a header.
    pub dead_letter_exchange: String,
    /// Durable queue bound to `dead_letter_exchange`, where poison messages wait for a human.
    pub dead_letter_queue: String,
    /// Durable work queue of `GroupTask`s that replicas share (see [`ScaleConfig`]), on the
    /// default exchange.
    pub groups_queue: String,
    /// Routing key of results when the job names none.
    pub default_reply_routing_key: String,
    /// Jobs this replica works on at once (AMQP prefetch).
    pub prefetch: u16,
    /// First wait before reconnecting to a lost broker; doubled after each failure.
    pub reconnect_min_backoff_ms: u64,
    /// Longest wait between reconnection attempts.
    pub reconnect_max_backoff_ms: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            exchange: "qrank".into(),
            queue: "qrank.jobs".into(),
            dead_letter_exchange: "qrank.dlx".into(),
            dead_letter_queue: "qrank.jobs.dead".into(),
            groups_queue: "qrank.groups".into(),
            default_reply_routing_key: "qrank.results".into(),
            prefetch: 4,
            reconnect_min_backoff_ms: 200,
            reconnect_max_backoff_ms: 10_000,
        }
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// The HTTP port serving `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on; port 0 picks a free port (logged at start).
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9464)),
        }
    }
}

/// The comparator that judges images.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// `brisque`, `niqe`, or a Co-Instruct checkpoint: a Hugging Face hub id such as
    /// `q-future/co-instruct` or a local folder.
    pub name: crate::models::ModelSpec,
    /// Where Co-Instruct runs (see [`crate::models::DEVICE_HELP`]): `auto`, `cpu`, `cuda` or
    /// `cuda:N,...`. The chart sets `cuda` on GPU nodes, so that a pod that got no GPU fails at
    /// start instead of running the model on its CPU.
    pub device: engine::model::DeviceSpec,
    /// Precision of Co-Instruct's weights (see [`crate::models::PRECISION_HELP`]): `auto`,
    /// `f32`, `bf16`, `f16` or `q8`.
    pub precision: engine::model::Precision,
    /// Rank by comparing groups even when the model can score single images. Slower, but it
    /// exercises the comparison path (scheduling, checkpoints) with a CPU model.
    pub compare_groups: bool,
    /// Memory, in MiB, for the image tokens of a Co-Instruct model (see
    /// [`crate::models::EMBEDDING_CACHE_HELP`]).
    pub embedding_cache_mib: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            name: crate::models::ModelSpec::Brisque,
            device: engine::model::DeviceSpec::Auto,
            precision: engine::model::Precision::Auto,
            compare_groups: false,
            embedding_cache_mib: crate::models::DEFAULT_EMBEDDING_CACHE_MIB,
        }
    }
}

/// Limits on work in flight; together with `amqp.prefetch` they bound memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Image-loader actors (fetch and decode); each loads one image at a time.
    pub num_loaders: usize,
    /// Images one job has being loaded or scored at once.
    pub max_images_in_flight: usize,
    /// Threads of the inference worker for each device (`model.device`), each running the
    /// comparator on its own OS thread. 0 picks: one per CPU core for BRISQUE and NIQE, one per
    /// device for a Co-Instruct model (which parallelises inside each call).
    pub num_inference_threads: usize,
    /// Capacity of the inference worker's queue; senders wait when it is full.
    pub inference_queue_capacity: usize,
    /// Tasks an inference thread takes from its queue at once, across jobs; never more than its
    /// share of those waiting, so that no other thread (or device) is left idle.
    pub max_batch_size: usize,
    /// Comparator calls per image when the job does not say.
    pub default_budget_calls_per_image: f64,
    /// Seed of the comparison plan when the job does not say.
    pub default_seed: u64,
    /// A comparison job stops before its budget is spent once a round moves the ranking by less
    /// than this (the mean rank change as a fraction of the number of images); 0 always spends
    /// the whole budget.
    pub stop_tolerance: f64,
    /// Write a checkpoint after this many answered groups (and at the end of every round).
    pub checkpoint_every_groups: usize,
    /// ... or at the first answer this many seconds after the last checkpoint, whichever comes
    /// first: a slow model loses at most this much work.
    pub checkpoint_every_secs: u64,
    /// Attempts to fetch one image before it is reported as a `fetch` error.
    pub fetch_attempts: u32,
    /// Largest image file accepted, in bytes.
    pub max_image_bytes: u64,
    /// Largest image accepted, in pixels (width x height), checked from the header before
    /// decoding. A decoded image takes 3 bytes a pixel while it is prepared, times
    /// `num_loaders` at once: 192 MB each at the default of 64 million.
    pub max_image_pixels: u64,
    /// The most images one job may list. A job past it fails at once, on its first delivery,
    /// with a result that says so: a source pointed at a bucket's root by mistake would
    /// otherwise hold a replica for days and fill its disk.
    pub max_images_per_job: u64,
    /// Memory for the prepared images that comparing jobs keep between rounds, shared by the
    /// process's jobs, in MiB (588 KiB an image for Co-Instruct). Images past it wait in files
    /// under `spill_dir` (see `crate::prepared`); 0 puts every image there.
    pub prepared_memory_mib: u64,
    /// Where images past `prepared_memory_mib` wait; empty for the system's temporary folder
    /// (`TMPDIR`).
    pub spill_dir: PathBuf,
    /// A job that makes no progress (no image loaded, scored or compared) for this long is
    /// given up: returned to the queue on its first delivery, answered with a failure after.
    pub job_stall_timeout_secs: u64,
}

impl PipelineConfig {
    /// The folder that images past `prepared_memory_mib` wait in.
    pub fn spill_dir(&self) -> PathBuf {
        if self.spill_dir.as_os_str().is_empty() {
            std::env::temp_dir()
        } else {
            self.spill_dir.clone()
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            num_loaders: 8,
            max_images_in_flight: 32,
            num_inference_threads: 0,
            inference_queue_capacity: 256,
            max_batch_size: 16,
            default_budget_calls_per_image: 3.0,
            default_seed: 0x5eed,
            stop_tolerance: engine::job::JobOptions::default().stop_tolerance,
            checkpoint_every_groups: 64,
            checkpoint_every_secs: 30,
            fetch_attempts: 3,
            max_image_bytes: engine::image::Limits::default().max_bytes,
            max_image_pixels: engine::image::Limits::default().max_pixels,
            max_images_per_job: 50_000,
            prepared_memory_mib: 2048,
            spill_dir: PathBuf::new(),
            job_stall_timeout_secs: 300,
        }
    }
}

/// Sharing one job's groups between replicas. A job with at least `share_groups_from_images`
/// images listed puts its groups on the work queue `amqp.groups_queue` instead of its own
/// replica's inference worker, and every replica that serves shared groups takes from it: a job
/// too large for one replica is judged by all of them, while its coordinator keeps its plan, fit
/// and checkpoints, and none of the pixels. The images are read again by the replica that judges
/// them, from the same store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleConfig {
    /// Smallest job, in images listed, whose groups are shared; 0 never shares.
    pub share_groups_from_images: u64,
    /// Take groups from the shared queue (when the model compares groups).
    pub serve_shared_groups: bool,
    /// Shared groups this replica judges at once (AMQP prefetch of the groups queue).
    pub shared_groups_prefetch: u16,
    /// A shared group with no answer after this long is put on the queue again (its answer was
    /// lost, e.g. with this replica's connection). Less than `pipeline.job_stall_timeout_secs`.
    pub shared_group_timeout_secs: u64,
}

impl Default for ScaleConfig {
    fn default() -> Self {
        Self {
            share_groups_from_images: 0,
            serve_shared_groups: true,
            shared_groups_prefetch: 2,
            shared_group_timeout_secs: 120,
        }
    }
}

/// What happens on SIGTERM or SIGINT.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight jobs may take to finish once consuming stops; jobs still running
    /// then are returned to the queue (nack with requeue) and the process exits.
    pub grace_period_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { grace_period_secs: 30 }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `json` (one object per line, for log collectors) or `text`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `info,actors=debug`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

impl Config {
    /// Read `path` (if given), apply the `QRANK_*__*` environment overrides from `env`, and check
    /// every value.
    pub fn load(path: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Parse {
                    origin: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: path.map_or("configuration".into(), |p| p.display().to_string()),
                message: e.to_string(),
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        let url = url::Url::parse(&self.amqp.url).map_err(|e| ConfigError::Invalid {
            key: "amqp.url",
            message: format!("not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "amqp" | "amqps") {
            return invalid("amqp.url", "the scheme must be amqp or amqps");
        }
        for (key, value) in [
            ("amqp.exchange", &self.amqp.exchange),
            ("amqp.queue", &self.amqp.queue),
            ("amqp.dead_letter_exchange", &self.amqp.dead_letter_exchange),
            ("amqp.dead_letter_queue", &self.amqp.dead_letter_queue),
            ("amqp.groups_queue", &self.amqp.groups_queue),
            ("amqp.default_reply_routing_key", &self.amqp.default_reply_routing_key),
        ] {
            if value.is_empty() || value.len() > 255 {
                return invalid(key, "must be 1 to 255 bytes long");
            }
        }
        if self.amqp.prefetch == 0 {
            return invalid("amqp.prefetch", "must be at least 1");
        }
        let gpus = matches!(
            self.model.device,
            engine::model::DeviceSpec::AllGpus | engine::model::DeviceSpec::Gpus(_)
        );
        if gpus && self.model.precision == engine::model::Precision::Q8 {
            return invalid(
                "model.precision",
                "q8 runs on the CPU only, and model.device names GPUs: use bf16 (or auto) there",
            );
        }
        if self.amqp.reconnect_min_backoff_ms == 0
            || self.amqp.reconnect_min_backoff_ms > self.amqp.reconnect_max_backoff_ms
        {
            return invalid(
                "amqp.reconnect_min_backoff_ms",
                "must be at least 1 and at most amqp.reconnect_max_backoff_ms",
            );
        }
        let p = &self.pipeline;
        for (key, value) in [
            ("pipeline.num_loaders", p.num_loaders),
            ("pipeline.max_images_in_flight", p.max_images_in_flight),
            ("pipeline.inference_queue_capacity", p.inference_queue_capacity),
            ("pipeline.max_batch_size", p.max_batch_size),
            ("pipeline.checkpoint_every_groups", p.checkpoint_every_groups),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if p.max_images_per_job == 0 {
            return invalid("pipeline.max_images_per_job", "must be at least 1");
        }
        if p.fetch_attempts == 0 {
            return invalid("pipeline.fetch_attempts", "must be at least 1");
        }
        if p.checkpoint_every_secs == 0 {
            return invalid("pipeline.checkpoint_every_secs", "must be at least 1");
        }
        if p.job_stall_timeout_secs == 0 {
            return invalid("pipeline.job_stall_timeout_secs", "must be at least 1");
        }
        if p.max_image_bytes == 0 {
            return invalid("pipeline.max_image_bytes", "must be at least 1");
        }
        if p.max_image_pixels == 0 {
            return invalid("pipeline.max_image_pixels", "must be at least 1");
        }
        if !(p.default_budget_calls_per_image.is_finite() && p.default_budget_calls_per_image > 0.0) {
            return invalid("pipeline.default_budget_calls_per_image", "must be a positive number");
        }
        if !(p.stop_tolerance.is_finite() && p.stop_tolerance >= 0.0) {
            return invalid("pipeline.stop_tolerance", "must be a number >= 0");
        }
        let scale = &self.scale;
        if scale.shared_groups_prefetch == 0 {
            return invalid("scale.shared_groups_prefetch", "must be at least 1");
        }
        if scale.shared_group_timeout_secs == 0 || scale.shared_group_timeout_secs >= p.job_stall_timeout_secs {
            return invalid(
                "scale.shared_group_timeout_secs",
                "must be at least 1 and less than pipeline.job_stall_timeout_secs",
            );
        }
        if self.shutdown.grace_period_secs == 0 {
            return invalid("shutdown.grace_period_secs", "must be at least 1");
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.filter).map_err(|e| ConfigError::Invalid {
            key: "log.filter",
            message: e.to_string(),
        })?;
        Ok(())
    }
}

/// Overlay `QRANK_<SECTION>__<KEY>=value` variables onto the file's table.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some((section, key)) = name.strip_prefix("QRANK_").and_then(|rest| rest.split_once("__")) else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(ConfigError::Env {
                name,
                message: format!("`{section}` is not a section"),
            });
        };
        section_table.insert(key, parse_env_value(&value));
    }
    Ok(())
}

/// A TOML scalar when the text is one (`30`, `true`, `1.5`), otherwise the text as a string.
fn parse_env_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_)))
        .unwrap_or_else(|| toml::Value::String(text.to_owned()))
}

/// `url` with its password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable URL>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load(None, env(&[])).unwrap();
        assert_eq!(config.amqp.queue, "qrank.jobs");
        assert_eq!(config.amqp.dead_letter_exchange, "qrank.dlx");
        assert_eq!(config.model.embedding_cache_mib, 512);
    }

    #[test]
    fn environment_overrides_the_file_with_typed_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qrank.toml");
        std::fs::write(&path, "[amqp]\nprefetch = 2\nqueue = \"from-file\"\n").unwrap();
        let config = Config::load(
            Some(&path),
            env(&[
                ("QRANK_AMQP__PREFETCH", "9"),
                ("QRANK_SHUTDOWN__GRACE_PERIOD_SECS", "5"),
                ("QRANK_HTTP__LISTEN", "127.0.0.1:0"),
                ("QRANK_MODEL__EMBEDDING_CACHE_MIB", "16384"),
                ("QRANK_MODEL__PRECISION", "q8"),
                ("QRANK_BIN", "/not/config"),
            ]),
        )
        .unwrap();
        assert_eq!(config.model.embedding_cache_mib, 16384);
        assert_eq!(config.model.precision, engine::model::Precision::Q8);
        assert_eq!(config.amqp.prefetch, 9);
        assert_eq!(config.amqp.queue, "from-file");
        assert_eq!(config.shutdown.grace_period_secs, 5);
        assert_eq!(config.http.listen.port(), 0);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let unknown = Config::load(None, env(&[("QRANK_AMQP__PREFECH", "9")])).unwrap_err();
        assert!(unknown.to_string().contains("prefech"), "{unknown}");
        let zero = Config::load(None, env(&[("QRANK_AMQP__PREFETCH", "0")])).unwrap_err();
        assert!(zero.to_string().starts_with("amqp.prefetch"), "{zero}");
        let precision = Config::load(None, env(&[("QRANK_MODEL__PRECISION", "int4")])).unwrap_err();
        assert!(
            format!("{precision:#}").contains("precision \"int4\": expected auto, f32, bf16, f16 or q8"),
            "{precision:#}"
        );
        let q8_on_gpus = Config::load(
            None,
            env(&[("QRANK_MODEL__PRECISION", "q8"), ("QRANK_MODEL__DEVICE", "cuda")]),
        )
        .unwrap_err();
        assert!(q8_on_gpus.to_string().starts_with("model.precision"), "{q8_on_gpus}");
        let scheme = Config::load(None, env(&[("QRANK_AMQP__URL", "http://x")])).unwrap_err();
        assert!(scheme.to_string().starts_with("amqp.url"), "{scheme}");
        let timeout = Config::load(None, env(&[("QRANK_SCALE__SHARED_GROUP_TIMEOUT_SECS", "300")])).unwrap_err();
        assert!(
            timeout
                .to_string()
                .contains("less than pipeline.job_stall_timeout_secs"),
            "{timeout}"
        );
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let config = Config::load(None, env(&[("QRANK_AMQP__URL", "amqps://u:hunter2@broker/vh")])).unwrap();
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("REDACTED"), "{text}");
    }
}
