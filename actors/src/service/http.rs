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

#[cfg(test)]
mod tests {
    use std::future::IntoFuture;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// The status line and body of `GET path`.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: qrank\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response.lines().next().unwrap_or_default().to_owned();
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_owned();
        format!("{status} {body}")
    }

    /// `/healthz` fails while the model is broken on every device, so that Kubernetes restarts
    /// the pod, and answers again once it works.
    #[tokio::test]
    async fn healthz_follows_the_model() {
        let (metrics, health) = (Arc::new(Metrics::new().unwrap()), Arc::new(Health::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(axum::serve(listener, router(metrics, health.clone())).into_future());
        assert_eq!(get(addr, "/healthz").await, "HTTP/1.1 200 OK ok");
        health.set_model_broken(true);
        assert_eq!(
            get(addr, "/healthz").await,
            "HTTP/1.1 503 Service Unavailable the model fails on every device"
        );
        health.set_model_broken(false);
        assert_eq!(get(addr, "/healthz").await, "HTTP/1.1 200 OK ok");
    }
}
