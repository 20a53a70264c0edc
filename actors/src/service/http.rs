//! The one HTTP port: `/metrics` (Prometheus text), `/healthz` (the process answers, and its
//! model is not failing on every device) and `/readyz` (broker connected, model loaded, not
//! draining), so Kubernetes probes and the
//! Prometheus scrape need a single container port.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::metrics::Metrics;
use super::Health;

#[derive(Clone)]
struct Probes {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(alive))
        .route("/readyz", get(ready))
        .with_state(Probes { metrics, health })
}

async fn metrics_text(State(probes): State<Probes>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        probes.metrics.render(),
    )
}

async fn alive(State(probes): State<Probes>) -> impl IntoResponse {
    if probes.health.alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the model fails on every device\n")
    }
}

async fn ready(State(probes): State<Probes>) -> impl IntoResponse {
    if probes.health.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
