//! `qrank serve`: check the configuration, then bind the probe port, start the actors, and run
//! until a shutdown signal; then drain within the grace period and exit.
//!
//! The configuration is fully checked before anything binds a port, so a bad value exits 64
//! with nothing half-started. `run` takes its shutdown signal as a future, so tests and the
//! binary drive it the same way.

use std::future::{Future, IntoFuture};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use ractor::Actor;

use super::{http, metrics::Metrics, Context, Health};
use crate::actors::job_source::JobSourceMsg;
use crate::actors::supervisor::{self, Supervisor};
use crate::actors::{lookup, JOB_SOURCE};
use crate::cli::{ServeArgs, UsageError};
use crate::config::{redact_url, Config, LogFormat};
use crate::exit;
use crate::prepared::{check_spill_dir, ImageMemory};

/// `qrank serve`.
pub fn serve(args: ServeArgs) -> Result<u8> {
    let config = Config::load(args.config.as_deref(), std::env::vars())
        .map_err(|e| UsageError(format!("bad configuration: {e}")))?;
    check_spill_dir(&config.pipeline.spill_dir()).map_err(|e| UsageError(format!("bad configuration: {e:#}")))?;
    if args.check_config {
        println!("configuration ok");
        return Ok(exit::OK);
    }
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let outcome = runtime.block_on(run(config, shutdown_signal()));
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome.map(|()| exit::OK)
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log.filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => builder.init(),
    }
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

/// Run the service until `shutdown` completes, then drain.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        broker = %redact_url(&config.amqp.url),
        "serving /metrics, /healthz and /readyz"
    );
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, http::router(metrics.clone(), health.clone())).with_graceful_shutdown(async {
        let _ = http_stopped.await;
    });
    let http = tokio::spawn(server.into_future());

    // The probes answer while the model loads (a checkpoint may download); /readyz waits for it.
    let model = config.model.clone();
    let comparators = tokio::task::spawn_blocking(move || {
        crate::models::load(
            &model.name,
            &model.device,
            model.precision,
            model.embedding_cache_mib,
            |warning| {
                tracing::warn!(device = %model.device, "{warning}");
            },
        )
    })
    .await
    .context("loading the model panicked")?
    .with_context(|| format!("loading the model {}", config.model.name))?;
    tracing::info!(
        model = %comparators.primary().model_id(),
        devices = %comparators.device_names(),
        precision = ?comparators.primary().precision(),
        "model loaded"
    );
    health.model_loaded.store(true, Ordering::Relaxed);
    let ctx = Context {
        image_memory: Arc::new(ImageMemory::from_config(&config.pipeline, &metrics)),
        config: config.clone(),
        metrics,
        health: health.clone(),
        comparators,
        shared_groups: Arc::default(),
    };
    let (supervisor, supervisor_done) = Actor::spawn(
        Some("qrank.supervisor".into()),
        Supervisor,
        supervisor::Arguments { ctx, with_broker: true },
    )
    .await
    .context("starting the actors")?;

    shutdown.await;
    health.draining.store(true, Ordering::Relaxed);
    let grace = Duration::from_secs(config.shutdown.grace_period_secs);
    tracing::info!(
        grace_period_secs = grace.as_secs(),
        "shutting down: no new jobs; draining"
    );
    if let Some(job_source) = lookup::<JobSourceMsg>(JOB_SOURCE) {
        match job_source.call(JobSourceMsg::Drain, Some(grace)).await {
            Ok(ractor::rpc::CallResult::Success(())) => tracing::info!("every job in flight finished"),
            _ => {
                let abandoned = job_source
                    .call(JobSourceMsg::Abandon, Some(Duration::from_secs(5)))
                    .await
                    .ok()
                    .and_then(|r| r.success_or(()).ok())
                    .unwrap_or(0);
                tracing::warn!(
                    num_jobs = abandoned,
                    "grace period exceeded; jobs returned to the queue"
                );
            }
        }
        let _ = job_source
            .call(JobSourceMsg::Close, Some(Duration::from_secs(10)))
            .await;
    }
    supervisor.stop_children(None);
    supervisor.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(5), supervisor_done).await;
    let _ = stop_http.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    tracing::info!("stopped");
    Ok(())
}
