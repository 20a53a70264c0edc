//! Sharing one job's groups between replicas (`config.scale`), against the real RabbitMQ and
//! SeaweedFS: two `qrank serve` processes, one job; the groups go to the shared queue and both
//! replicas judge them; the ranking is the one a single replica makes on its own. A task whose
//! answer is lost is asked again, one given back is judged by another replica, a poison task is
//! dead-lettered with its reason while the replicas keep serving, and a replica whose model
//! fails leaves the groups to one whose model works.

mod service_support;

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::BasicProperties;
use protos::v1::{RankJob, RankResult};
use qrank_tests::{files_in, tiny_model};
use service_support::{job, metrics_once, on_model, Broker, Metrics, Sandbox, Servers, Service};

const RESULT_TIMEOUT: Duration = Duration::from_secs(120);

/// BRISQUE judging groups (as a comparator) for the whole budget, with one job and one shared
/// group at a time per replica, so that the broker hands the groups round to both.
const SHARING: [(&str, &str); 5] = [
    ("QRANK_MODEL__COMPARE_GROUPS", "true"),
    ("QRANK_PIPELINE__STOP_TOLERANCE", "0"),
    ("QRANK_SCALE__SHARE_GROUPS_FROM_IMAGES", "10"),
    ("QRANK_SCALE__SHARED_GROUPS_PREFETCH", "1"),
    ("QRANK_AMQP__PREFETCH", "1"),
];

fn comparing_job(sandbox: &Sandbox, job_id: &str, out: &str) -> RankJob {
    RankJob {
        budget_calls_per_image: 2.0,
        output_prefix: sandbox.url(out),
        ..job(sandbox, job_id, "shared.results")
    }
}

fn answered(metrics: &Metrics) -> f64 {
    metrics.value("qrank_shared_groups_served_total{outcome=\"answered\"}")
}

fn ranked(metrics: &Metrics) -> f64 {
    metrics.value("qrank_job_completed_total{outcome=\"ranked\"}")
}

fn order(result: &RankResult) -> Vec<String> {
    result.items.iter().map(|item| item.uri.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_job_is_judged_by_every_replica() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "shared-groups");
    let photos = files_in("examples/photos", &["jpg"]);
    sandbox.upload("images", &photos).await;
    let first = Service::start(&sandbox, &SHARING).await;
    let second = Service::start(&sandbox, &SHARING).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("shared.results").await;

    broker.publish_job(&comparing_job(&sandbox, "job-shared", "out")).await;
    let (shared, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&first, &second]).await;
    assert_eq!(shared.failure, "");
    assert_eq!(shared.items.len(), photos.len());
    let stats = shared.stats.expect("stats");
    assert_eq!(stats.num_groups, 2 * photos.len() as u64, "2 calls per image");

    // Every group went through the shared queue, published by the replica that took the job,
    // and was answered by one replica or the other; both took part; one coordinated the job.
    let num_groups = stats.num_groups as f64;
    let metrics = metrics_once(&[&first, &second], |m| {
        answered(&m[0]) + answered(&m[1]) == num_groups && ranked(&m[0]) + ranked(&m[1]) == 1.0
    })
    .await;
    let (a, b) = (&metrics[0], &metrics[1]);
    let published = a.value("qrank_shared_groups_published_total{attempt=\"first\"}")
        + b.value("qrank_shared_groups_published_total{attempt=\"first\"}");
    assert_eq!(published, num_groups);
    assert_eq!(answered(a) + answered(b), num_groups);
    assert!(
        answered(a) > 0.0 && answered(b) > 0.0,
        "both replicas judge: {} and {}",
        answered(a),
        answered(b)
    );
    assert_eq!(ranked(a) + ranked(b), 1.0);

    // The same job on one replica that does not share: the same plan, the same answers, the
    // same ranking.
    drop((first, second));
    let alone = Service::start(&sandbox, &SHARING[..2]).await;
    broker
        .publish_job(&comparing_job(&sandbox, "job-alone", "out-alone"))
        .await;
    let (local, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&alone]).await;
    assert_eq!(order(&local), order(&shared));
    let metrics = alone.metrics().await;
    assert_eq!(
        metrics.value("qrank_shared_groups_published_total{attempt=\"first\"}"),
        0.0
    );
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poison_group_task_is_dead_lettered_and_serving_goes_on() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "shared-poison");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(12).collect();
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &SHARING).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("shared.results").await;

    let garbage = b"\xff\xff not a GroupTask".to_vec();
    let properties = BasicProperties::default()
        .with_type("qrank.v1.GroupTask".into())
        .with_reply_to("nobody".into())
        .with_correlation_id("1/1".into());
    broker.publish_group_task(&garbage, properties).await;
    let (body, headers) = broker
        .dead_letter(Duration::from_secs(20))
        .await
        .unwrap_or_else(|| panic!("no dead letter:\n{}", service.log()));
    assert_eq!(body, garbage);
    assert!(
        headers["x-qrank-reason"].contains("undecodable GroupTask"),
        "{headers:?}"
    );

    broker
        .publish_job(&comparing_job(&sandbox, "job-after-poison", "out"))
        .await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;
    assert_eq!(result.items.len(), photos.len());
    let metrics = service.metrics().await;
    assert_eq!(
        metrics.value("qrank_shared_groups_served_total{outcome=\"poison\"}"),
        1.0
    );
    assert_eq!(
        metrics.value("qrank_shared_groups_served_total{outcome=\"answered\"}"),
        result.stats.expect("stats").num_groups as f64
    );
    broker.close().await;
}

/// The coordinating replica does not judge; before the judging one starts, a stand-in worker
/// takes two tasks: it acks the first without answering (an answer lost) and gives the second
/// back (a worker that died). The job still gets every group answered: the second by the
/// broker's redelivery, the first because the coordinator publishes it again once late.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_answer_is_asked_again_and_a_returned_task_judged_elsewhere() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "shared-lost");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(12).collect();
    sandbox.upload("images", &photos).await;
    let quick = [
        ("QRANK_SCALE__SHARED_GROUP_TIMEOUT_SECS", "2"),
        // The watchdog that republishes late groups runs every quarter of this.
        ("QRANK_PIPELINE__JOB_STALL_TIMEOUT_SECS", "8"),
    ];
    let coordinating: Vec<_> = SHARING
        .iter()
        .chain(&quick)
        .chain(&[("QRANK_SCALE__SERVE_SHARED_GROUPS", "false")])
        .copied()
        .collect();
    let coordinator = Service::start(&sandbox, &coordinating).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("shared.results").await;
    broker.publish_job(&comparing_job(&sandbox, "job-lost", "out")).await;

    let lost = broker
        .take_group_task(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("no task:\n{}", coordinator.log()));
    lost.delivery.ack(BasicAckOptions::default()).await.expect("ack");
    let returned = broker
        .take_group_task(Duration::from_secs(5))
        .await
        .expect("a second task");
    returned
        .delivery
        .reject(BasicRejectOptions { requeue: true })
        .await
        .expect("reject");

    let judge = Service::start(&sandbox, &SHARING).await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&coordinator, &judge]).await;
    assert_eq!(result.failure, "");
    assert_eq!(result.items.len(), photos.len());
    let num_groups = result.stats.expect("stats").num_groups as f64;
    assert_eq!(num_groups, 2.0 * photos.len() as f64, "every group answered");
    // Groups still queued when the judging replica starts may be late too, and be answered
    // twice: at least every group.
    let metrics = metrics_once(&[&coordinator, &judge], |m| answered(&m[1]) >= num_groups).await;
    let (c, j) = (&metrics[0], &metrics[1]);
    assert!(
        c.value("qrank_shared_groups_published_total{attempt=\"again\"}") >= 1.0,
        "the lost group was published again"
    );
    assert_eq!(answered(c), 0.0);
    assert!(
        answered(j) >= num_groups,
        "the judging replica answered every group, the returned one included: {}",
        answered(j)
    );
    broker.close().await;
}

/// A judging replica whose model fails on every device stops taking shared groups. The groups
/// it failed before it knew (4, one short of the 5 failures in a row that tell it) are answered
/// as failed; the one that told it goes back to the queue, and so do the rest, for a working
/// judge, which answers them: the job is ranked.
#[tokio::test(flavor = "multi_thread")]
async fn a_judge_whose_model_fails_everywhere_returns_the_groups() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "shared-broken");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(12).collect();
    sandbox.upload("images", &photos).await;
    let (working_model, broken_model) = (tiny_model(false), tiny_model(true));
    let with_model = |model, serve: &'static str| {
        let mut settings: Vec<_> = on_model(model).to_vec();
        settings.extend_from_slice(&SHARING);
        settings.push(("QRANK_SCALE__SERVE_SHARED_GROUPS", serve));
        settings
    };
    let coordinator = Service::start(&sandbox, &with_model(&working_model, "false")).await;
    let broken = Service::start(&sandbox, &with_model(&broken_model, "true")).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("shared.results").await;
    broker
        .publish_job(&comparing_job(&sandbox, "job-broken-judge", "out"))
        .await;

    broken.wait_until_it_takes_no_work().await;
    let served =
        |m: &Metrics, outcome: &str| m.value(&format!("qrank_shared_groups_served_total{{outcome=\"{outcome}\"}}"));
    let metrics = broken.metrics().await;
    assert_eq!(served(&metrics, "failed"), 4.0, "{}", broken.log());
    assert_eq!(served(&metrics, "requeued"), 1.0, "{}", broken.log());
    assert_eq!(answered(&metrics), 0.0);
    assert!(
        broker.groups_waiting().await >= 1,
        "the returned group waits in the queue"
    );

    let judge = Service::start(&sandbox, &with_model(&working_model, "true")).await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&coordinator, &broken, &judge]).await;
    assert_eq!(result.failure, "");
    assert_eq!(result.items.len(), photos.len());
    let metrics = broken.metrics().await;
    assert_eq!(
        (served(&metrics, "failed"), served(&metrics, "requeued")),
        (4.0, 1.0),
        "the broken judge took nothing more"
    );
    broker.close().await;
}
