//! `qrank serve` when things go wrong mid-job: a replica killed outright, a replica told to
//! stop, and a replica whose model fails. Runs against the real RabbitMQ and SeaweedFS (see `service_support`).
//!
//! A slow job is made by ranking with group comparisons on one inference thread, one group at a
//! time, checkpointing after every group: the first checkpoint part proves the job is running.

mod service_support;

use std::time::{Duration, Instant};

use protos::v1::RankJob;
use qrank_tests::{files_in, tiny_model};
use service_support::{job, on_model, Broker, Sandbox, Servers, Service};

const RESULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings that make a job slow and observable: compare groups, serially, checkpointing each.
const SLOW: &[(&str, &str)] = &[
    ("QRANK_MODEL__COMPARE_GROUPS", "true"),
    ("QRANK_PIPELINE__NUM_INFERENCE_THREADS", "1"),
    ("QRANK_PIPELINE__MAX_IMAGES_IN_FLIGHT", "1"),
    ("QRANK_PIPELINE__CHECKPOINT_EVERY_GROUPS", "1"),
    // Spend the whole budget: a job that stopped early would not be slow.
    ("QRANK_PIPELINE__STOP_TOLERANCE", "0"),
];

fn slow_job(sandbox: &Sandbox, id: &str, reply: &str, budget: f64) -> RankJob {
    RankJob {
        budget_calls_per_image: budget,
        ..job(sandbox, id, reply)
    }
}

/// Wait until the job has checkpointed at least one group.
async fn wait_for_checkpoint(sandbox: &Sandbox, service: &Service) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sandbox.list("out/checkpoint").await.is_empty() {
        assert!(Instant::now() < deadline, "no checkpoint in 60 s:\n{}", service.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A replica killed mid-job (SIGKILL: no ack, no nack, no goodbye) leaves its job unacked; the
/// broker redelivers it to the next replica, which resumes from the checkpoint without asking
/// the comparator about the groups already answered, and exactly one result is published.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_replica_s_job_is_redelivered_resumed_and_answered_once() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "kill");
    let photos = files_in("examples/photos", &["jpg"]);
    sandbox.upload("images", &photos).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("kill.results").await;

    let mut first = Service::start(&sandbox, SLOW).await;
    broker
        .publish_job(&slow_job(&sandbox, "job-kill", "kill.results", 20.0))
        .await;
    wait_for_checkpoint(&sandbox, &first).await;
    first.kill();
    assert!(
        sandbox.get("out/result.json").await.is_none(),
        "the job finished before the kill; make it slower"
    );
    let checkpointed = sandbox.list("out/checkpoint").await.len();

    let second = Service::start(&sandbox, SLOW).await;
    let (result, _) = Broker::next_result(&mut results, RESULT_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("no result after redelivery:\n{}", second.log()));
    assert_eq!(result.failure, "");
    assert_eq!(result.items.len(), photos.len());
    let stats = result.stats.expect("stats");
    assert!(
        stats.num_groups_resumed as usize >= checkpointed,
        "groups resumed {} < checkpointed before the kill {checkpointed}",
        stats.num_groups_resumed
    );
    assert_eq!(
        stats.num_model_calls + stats.num_groups_resumed,
        stats.num_groups,
        "every group was asked once"
    );
    let metrics = second.metrics().await;
    assert_eq!(
        metrics.value("qrank_ranker_groups_resumed_total"),
        stats.num_groups_resumed as f64
    );
    assert_eq!(
        metrics.value("qrank_inference_calls_total{device=\"cpu\",kind=\"compare\"}"),
        stats.num_model_calls as f64
    );

    // Exactly one result, and the job is gone from the queue.
    assert!(
        Broker::next_result(&mut results, Duration::from_secs(3))
            .await
            .is_none(),
        "a second result was published"
    );
    assert_eq!(broker.jobs_waiting().await, 0);
    broker.close().await;
}

/// SIGTERM stops consuming at once, lets the job in flight finish and publish its result within
/// the grace period, and exits 0; a job published after the signal stays in the queue.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_job_in_flight_and_takes_no_new_one() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "drain");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(8).collect();
    sandbox.upload("images", &photos).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("drain.results").await;

    let mut service = Service::start(&sandbox, SLOW).await;
    broker
        .publish_job(&slow_job(&sandbox, "job-drain", "drain.results", 10.0))
        .await;
    wait_for_checkpoint(&sandbox, &service).await;
    service.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker
        .publish_job(&job(&sandbox, "job-too-late", "drain.results"))
        .await;

    let status = service.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status:\n{}",
        service.log()
    );
    let (result, _) = Broker::next_result(&mut results, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("the job in flight published no result:\n{}", service.log()));
    assert_eq!(result.job_id, "job-drain");
    assert_eq!(result.items.len(), photos.len());
    let log = service.log();
    assert!(log.contains("stopped consuming jobs"), "{log}");
    assert!(
        log.contains("waiting for jobs in flight"),
        "the job was not in flight at SIGTERM: {log}"
    );
    assert_eq!(
        broker.jobs_waiting().await,
        1,
        "the late job waits for another replica:\n{}",
        service.log()
    );
    broker.close().await;
}

/// When the job in flight cannot finish within the grace period, SIGTERM still exits 0 in time
/// and the job goes back to the queue for another replica.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_grace_period_returns_the_job_to_the_queue() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "grace");
    let photos = files_in("examples/photos", &["jpg"]);
    sandbox.upload("images", &photos).await;
    let broker = Broker::connect(&sandbox).await;
    let mut settings = SLOW.to_vec();
    settings.push(("QRANK_SHUTDOWN__GRACE_PERIOD_SECS", "1"));
    let mut service = Service::start(&sandbox, &settings).await;
    broker
        .publish_job(&slow_job(&sandbox, "job-grace", "grace.results", 100.0))
        .await;
    wait_for_checkpoint(&sandbox, &service).await;

    let signalled = Instant::now();
    service.terminate();
    let status = service.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status:\n{}",
        service.log()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(15),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(
        sandbox.get("out/result.json").await.is_none(),
        "the job should not have finished"
    );
    assert_eq!(broker.jobs_waiting().await, 1, "the job is back in the queue");
    broker.close().await;
}

/// A replica whose model fails on every device takes no more work: `/healthz` fails (for
/// Kubernetes to restart it), it stops consuming, and the jobs it held go back to the queue and
/// wait there. A working replica then answers each of them, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_whose_model_fails_everywhere_leaves_its_jobs_to_a_working_one() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "broken");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(8).collect();
    sandbox.upload("images", &photos).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("broken.results").await;

    let (broken_model, working_model) = (tiny_model(true), tiny_model(false));
    let broken = Service::start(&sandbox, &on_model(&broken_model)).await;
    let ids = ["job-a", "job-b", "job-c"];
    for id in ids {
        let job = RankJob {
            output_prefix: sandbox.url(&format!("out-{id}")),
            ..job(&sandbox, id, "broken.results")
        };
        broker.publish_job(&job).await;
    }

    // The broken replica takes no more jobs, and gives back the ones it took.
    broken.wait_until_it_takes_no_work().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while broker.jobs_waiting().await != 3 {
        assert!(
            Instant::now() < deadline,
            "{} jobs waiting after 60 s:\n{}",
            broker.jobs_waiting().await,
            broken.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        broken.log().contains("taking no jobs or shared groups"),
        "{}",
        broken.log()
    );
    // They stay in the queue, unanswered, while it runs.
    assert!(Broker::next_result(&mut results, Duration::from_secs(2))
        .await
        .is_none());
    assert_eq!(broker.jobs_waiting().await, 3);
    let metrics = broken.metrics().await;
    assert_eq!(metrics.value("qrank_job_completed_total{outcome=\"ranked\"}"), 0.0);
    assert_eq!(metrics.value("qrank_job_completed_total{outcome=\"failed\"}"), 0.0);

    let working = Service::start(&sandbox, &on_model(&working_model)).await;
    let mut answered = Vec::new();
    for _ in ids {
        let (result, _) = Broker::next_result(&mut results, RESULT_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("only {answered:?} answered:\n{}", working.log()));
        assert_eq!(result.failure, "", "{}", result.job_id);
        assert_eq!(result.items.len(), photos.len(), "{}", result.job_id);
        answered.push(result.job_id);
    }
    answered.sort();
    assert_eq!(answered, ids);
    assert!(Broker::next_result(&mut results, Duration::from_secs(2))
        .await
        .is_none());
    assert_eq!(broker.jobs_waiting().await, 0);
    assert_eq!(
        broken
            .metrics()
            .await
            .value("qrank_job_completed_total{outcome=\"ranked\"}"),
        0.0
    );
    broker.close().await;
}
