//! `qrank serve` survives losing the broker: when RabbitMQ closes its connection, the service
//! reconnects with backoff, declares its topology again, hands the publisher a new channel, and
//! ranks the next job. The connection is closed from the broker's side with `rabbitmqctl`, so
//! other clients of the shared test broker are untouched.

mod service_support;

use std::process::Command;
use std::time::{Duration, Instant};

use qrank_tests::{files_in, skip};
use service_support::{job, Broker, Sandbox, Servers, Service};

/// The broker's id of the connection the process `pid` opened, found by its connection name.
fn connection_of(pid: u32) -> Option<String> {
    let output = Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-q"])
        .output()
        .ok()?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let name = format!("qrank serve {pid}\"");
    listing
        .lines()
        .find(|line| line.contains(&name))
        .and_then(|line| line.split_whitespace().next())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_broker_connection_is_reestablished() {
    let Some(servers) = Servers::from_env() else { return };
    if Command::new("rabbitmqctl").arg("--help").output().is_err() {
        skip::<()>("rabbitmqctl is not installed");
        return;
    }
    let sandbox = Sandbox::new(&servers, "reconnect");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(3).collect();
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[("QRANK_AMQP__RECONNECT_MIN_BACKOFF_MS", "100")]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("reconnect.results").await;

    let connection = connection_of(service.pid()).expect("the service's connection is listed by the broker");
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", &connection, "test: broker went away"])
        .output()
        .expect("running rabbitmqctl");
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));

    // Reconnected: counted once, connected again, and ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = service.metrics().await;
        if metrics.value("qrank_amqp_reconnects_total") >= 1.0 && metrics.value("qrank_amqp_connected") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnect in 30 s:\n{}", service.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(service.get("/readyz").await.map(|(status, _)| status), Some(200));
    assert_ne!(connection_of(service.pid()), Some(connection), "a new connection");

    broker
        .publish_job(&job(&sandbox, "job-after-reconnect", "reconnect.results"))
        .await;
    let (result, _) = Broker::next_result(&mut results, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no result after the reconnect:\n{}", service.log()));
    assert_eq!(result.items.len(), photos.len());
    broker.close().await;
}
