//! `qrank serve` end to end against the real RabbitMQ and SeaweedFS: jobs in over AMQP, images
//! from S3, results out over AMQP and as JSON in S3, poison to the dead-letter queue, metrics
//! that count the work. See `service_support` for how servers are found and cleaned up.

mod service_support;

use std::collections::BTreeSet;
use std::time::Duration;

use lapin::BasicProperties;
use protos::v1::RankJob;
use qrank_tests::{bad_fixture_kinds, files_in};
use service_support::{job, metrics_once, Broker, Metrics, Sandbox, Servers, Service};

const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A job over real photos in S3 gets one RankResult on its reply key with every photo ranked,
/// the same result as JSON at `output_uri`, the contract's message properties, and metrics
/// that count exactly that work. Sending the same job again republishes the stored result
/// without ranking again.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_is_ranked_published_and_written() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "end-to-end");
    let photos = files_in("examples/photos", &["jpg"]);
    let names = sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("e2e.results").await;

    broker.publish_job(&job(&sandbox, "job-e2e", "e2e.results")).await;
    let (result, properties) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;

    assert_eq!(result.job_id, "job-e2e");
    assert_eq!(result.failure, "");
    assert_eq!(result.model_id, "brisque");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    let ranked: BTreeSet<String> = result.items.iter().map(|i| i.uri.clone()).collect();
    let expected: BTreeSet<String> = names.iter().map(|n| format!("{}{n}", sandbox.url("images"))).collect();
    assert_eq!(ranked, expected);
    for (i, item) in result.items.iter().enumerate() {
        assert_eq!(item.rank as usize, i + 1);
        assert!(item.score.is_finite());
        if i > 0 {
            assert!(item.score <= result.items[i - 1].score, "best first");
        }
    }
    assert_eq!(result.stats.as_ref().map(|s| s.num_images), Some(photos.len() as u64));
    assert_eq!(
        properties.kind().as_ref().map(|k| k.as_str()),
        Some("qrank.v1.RankResult")
    );
    assert_eq!(
        properties.content_type().as_ref().map(|c| c.as_str()),
        Some("application/x-protobuf")
    );
    assert_eq!(
        properties.correlation_id().as_ref().map(|c| c.as_str()),
        Some("job-e2e")
    );

    // The JSON copy says the same.
    assert_eq!(result.output_uri, format!("{}result.json", sandbox.url("out")));
    let json: serde_json::Value =
        serde_json::from_slice(&sandbox.get("out/result.json").await.expect("result.json written")).unwrap();
    assert_eq!(json["job_id"], "job-e2e");
    let json_items = json["items"].as_array().expect("items");
    assert_eq!(json_items.len(), result.items.len());
    for (item, json_item) in result.items.iter().zip(json_items) {
        assert_eq!(json_item["uri"], item.uri.as_str());
        assert_eq!(json_item["rank"], item.rank);
        // serde_json's default float parsing may be off by one ulp.
        let score = json_item["score"].as_f64().expect("a numeric score");
        assert!(
            (score - item.score).abs() <= 1e-12 * item.score.abs().max(1.0),
            "{json_item}"
        );
    }

    // The job was acked: nothing waits in the queue.
    assert_eq!(broker.jobs_waiting().await, 0);

    // The counters match the work.
    let metrics = service.metrics().await;
    let n = photos.len() as f64;
    assert_eq!(metrics.value("qrank_job_received_total"), 1.0);
    assert_eq!(metrics.value("qrank_job_completed_total{outcome=\"ranked\"}"), 1.0);
    assert_eq!(metrics.value("qrank_image_loaded_total"), n);
    assert_eq!(
        metrics.value("qrank_inference_calls_total{device=\"cpu\",kind=\"score\"}"),
        n
    );
    assert_eq!(metrics.value("qrank_amqp_published_total{outcome=\"confirmed\"}"), 1.0);
    assert_eq!(metrics.value("qrank_amqp_connected"), 1.0);
    assert_eq!(metrics.value("qrank_job_in_flight"), 0.0);
    assert_eq!(metrics.value("qrank_job_duration_seconds_count"), 1.0);

    // Redelivering the same job republishes the stored result; nothing is ranked again.
    broker.publish_job(&job(&sandbox, "job-e2e", "e2e.results")).await;
    let (again, _) = Broker::next_result(&mut results, RESULT_TIMEOUT)
        .await
        .expect("a republished result");
    assert_eq!(again, result);
    let metrics = service.metrics().await;
    assert_eq!(metrics.value("qrank_job_completed_total{outcome=\"republished\"}"), 1.0);
    assert_eq!(metrics.value("qrank_image_loaded_total"), n, "nothing was loaded again");
    broker.close().await;
}

/// A drop-worst job ranked by group comparisons: every photo is listed best first, the worst
/// quarter marked dropped, each with its chance of truly being among the dropped; the JSON
/// copy says the same, and the metrics count the job under its stop reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_drop_worst_job_marks_the_worst_fraction_with_its_doubt() {
    use protos::v1::Mode;

    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "drop-worst");
    let photos = files_in("examples/photos", &["jpg"]);
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[("QRANK_MODEL__COMPARE_GROUPS", "true")]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("drop.results").await;

    let drop_worst = RankJob {
        mode: Mode::DropWorst as i32,
        drop_worst_fraction: 0.25,
        ..job(&sandbox, "job-drop", "drop.results")
    };
    broker.publish_job(&drop_worst).await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;

    assert_eq!(result.failure, "");
    assert_eq!(result.items.len(), photos.len(), "every photo is listed");
    let num_dropped = (photos.len() as f64 * 0.25).round() as usize;
    let (mut total, mut dropped_total) = (0.0, 0.0);
    for (i, item) in result.items.iter().enumerate() {
        assert_eq!(item.dropped, i >= photos.len() - num_dropped, "{item:?}");
        let p = item.p_dropped.unwrap_or_else(|| panic!("no p_dropped: {item:?}"));
        assert!((0.0..=1.0).contains(&p), "{item:?}");
        assert_eq!(item.p_top_k, None);
        total += p;
        if item.dropped {
            dropped_total += p;
        }
    }
    // Exactly `num_dropped` photos are among the worst, so their chances add up to that, and
    // the dropped ones are the likelier.
    assert!((total - num_dropped as f64).abs() < 0.3, "chances add up to {total}");
    let kept = photos.len() - num_dropped;
    assert!(
        dropped_total / num_dropped as f64 > (total - dropped_total) / kept as f64,
        "{:?}",
        result.items
    );
    assert!(
        ["budget", "stable", "settled"].contains(&result.stop_reason.as_str()),
        "{:?}",
        result.stop_reason
    );
    let stopped = format!("qrank_job_stopped_total{{reason=\"{}\"}}", result.stop_reason);
    assert_eq!(service.metrics().await.value(&stopped), 1.0, "{stopped}");

    let json: serde_json::Value =
        serde_json::from_slice(&sandbox.get("out/result.json").await.expect("result.json written")).unwrap();
    for (item, json_item) in result.items.iter().zip(json["items"].as_array().expect("items")) {
        assert_eq!(json_item["dropped"], item.dropped);
        let p = json_item["p_dropped"].as_f64().expect("a numeric p_dropped");
        assert!((p - item.p_dropped.unwrap()).abs() <= 1e-12, "{json_item}");
    }
    broker.close().await;
}

/// A comparing job past `pipeline.prepared_memory_mib` keeps its photos in files under
/// `pipeline.spill_dir` between rounds, and ranks exactly as a job with the photos in memory; the
/// metrics count the photos spilled, and the files are gone once the job is done.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_its_image_memory_waits_on_disk_and_ranks_the_same() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "spill");
    let photos = files_in("examples/photos", &["jpg"]);
    sandbox.upload("images", &photos).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("spill.results").await;
    let spill = tempfile::tempdir().unwrap();
    let spill_dir = spill.path().to_str().unwrap();
    let comparing = [
        ("QRANK_MODEL__COMPARE_GROUPS", "true"),
        ("QRANK_PIPELINE__STOP_TOLERANCE", "0"),
    ];
    let mut ranked = Vec::new();
    for (job_id, memory_mib) in [("job-in-memory", "2048"), ("job-on-disk", "0")] {
        let mut settings = comparing.to_vec();
        settings.extend([
            ("QRANK_PIPELINE__PREPARED_MEMORY_MIB", memory_mib),
            ("QRANK_PIPELINE__SPILL_DIR", spill_dir),
        ]);
        let service = Service::start(&sandbox, &settings).await;
        let job = RankJob {
            budget_calls_per_image: 1.0,
            output_prefix: sandbox.url(job_id),
            ..job(&sandbox, job_id, "spill.results")
        };
        broker.publish_job(&job).await;
        let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;
        assert_eq!(result.failure, "");
        // The job lets go of its photos a moment after the result, once it is acked.
        let held =
            |metrics: &Metrics, place: &str| metrics.value(&format!("qrank_prepared_image_bytes{{place=\"{place}\"}}"));
        let metrics = metrics_once(&[&service], |m| {
            held(&m[0], "memory") == 0.0 && held(&m[0], "disk") == 0.0
        })
        .await
        .remove(0);
        let spilled = if memory_mib == "0" { photos.len() as f64 } else { 0.0 };
        assert_eq!(
            metrics.value("qrank_prepared_images_spilled_total"),
            spilled,
            "{job_id}"
        );
        for place in ["memory", "disk"] {
            assert_eq!(held(&metrics, place), 0.0, "{job_id}: bytes in {place}");
        }
        let left: Vec<_> = walkdir::WalkDir::new(spill.path())
            .into_iter()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".rgb"))
            .collect();
        assert!(left.is_empty(), "{job_id}: the spilled files are deleted: {left:?}");
        ranked.push(
            result
                .items
                .iter()
                .map(|i| (i.uri.clone(), i.score))
                .collect::<Vec<_>>(),
        );
    }
    // The same order and scores; answers are recorded as they come back from the inference
    // threads, so the fit may add them up in another order, to within rounding.
    assert_eq!(ranked[0].len(), photos.len());
    for ((uri_a, score_a), (uri_b, score_b)) in ranked[0].iter().zip(&ranked[1]) {
        assert_eq!(uri_a, uri_b, "the same ranking from memory and from disk");
        assert!((score_a - score_b).abs() < 1e-9, "{uri_a}: {score_a} vs {score_b}");
    }
    broker.close().await;
}

/// A job whose source lists more images than `pipeline.max_images_per_job` fails on its first
/// delivery with a result that names the limit: it would fail again, so it is not requeued.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_over_the_image_limit_fails_at_once_and_says_why() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "too-many");
    let photos = files_in("examples/photos", &["jpg"]);
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[("QRANK_PIPELINE__MAX_IMAGES_PER_JOB", "5")]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("too-many.results").await;
    broker
        .publish_job(&job(&sandbox, "job-too-many", "too-many.results"))
        .await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;
    assert!(result.items.is_empty());
    assert!(
        result.failure.starts_with("the source lists more than 5 images")
            && result.failure.contains("pipeline.max_images_per_job"),
        "{}",
        result.failure
    );
    let metrics = service.metrics().await;
    assert_eq!(metrics.value("qrank_job_completed_total{outcome=\"failed\"}"), 1.0);
    assert_eq!(metrics.value("qrank_job_completed_total{outcome=\"requeued\"}"), 0.0);
    assert_eq!(broker.jobs_waiting().await, 0, "answered and acked, not requeued");
    broker.close().await;
}

/// `pipeline.max_image_pixels` is the service's limit on pixels: the 320 x 320 photos are over
/// 70,000 and reported as `over_limit`, the 320 x 213 ones under it are ranked.
#[tokio::test(flavor = "multi_thread")]
async fn the_pixel_limit_is_the_services_to_set() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "pixel-limit");
    let photos = files_in("examples/photos", &["jpg"]);
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[("QRANK_PIPELINE__MAX_IMAGE_PIXELS", "70000")]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("pixels.results").await;
    broker.publish_job(&job(&sandbox, "job-pixels", "pixels.results")).await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;
    let over: BTreeSet<&str> = result
        .errors
        .iter()
        .map(|e| e.uri.rsplit('/').next().unwrap())
        .collect();
    let astronauts: BTreeSet<&str> = photos
        .iter()
        .filter_map(|photo| photo.file_name()?.to_str())
        .filter(|name| name.starts_with("astronaut"))
        .collect();
    assert_eq!(over, astronauts, "{:?}", result.errors);
    for error in &result.errors {
        assert_eq!(error.kind, "over_limit");
        assert!(
            error.reason.contains("pixel count 102400 is over 70000"),
            "{}",
            error.reason
        );
    }
    assert_eq!(result.items.len(), photos.len() - astronauts.len());
    broker.close().await;
}

/// Broken files next to good photos: the job completes, every photo is ranked, and every
/// broken file is reported with its kind, in the message and the metrics.
#[tokio::test(flavor = "multi_thread")]
async fn bad_images_are_reported_not_fatal() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "bad-images");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(4).collect();
    sandbox.upload("images", &photos).await;
    let bad = sandbox
        .upload("images", &files_in("engine/tests/data/images/bad", &[]))
        .await;
    let service = Service::start(&sandbox, &[]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("bad.results").await;

    broker.publish_job(&job(&sandbox, "job-bad", "bad.results")).await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;

    assert_eq!(result.failure, "");
    assert_eq!(result.items.len(), photos.len());
    let reported: BTreeSet<(String, String)> = result
        .errors
        .iter()
        .map(|e| {
            assert!(e.reason.contains(&e.uri), "the reason names the file: {e:?}");
            (e.uri.rsplit('/').next().unwrap().to_owned(), e.kind.clone())
        })
        .collect();
    let expected: BTreeSet<(String, String)> = bad_fixture_kinds()
        .into_iter()
        .filter(|(name, _)| bad.iter().any(|b| b == name))
        .map(|(n, k)| (n.to_owned(), k.to_owned()))
        .collect();
    assert_eq!(reported, expected);
    let metrics = service.metrics().await;
    let counted: f64 = ["over_limit", "corrupt", "empty", "unsupported", "truncated"]
        .iter()
        .map(|kind| metrics.value(&format!("qrank_image_errors_total{{error_type=\"{kind}\"}}")))
        .sum();
    assert_eq!(counted, expected.len() as f64);
    broker.close().await;
}

/// Undecodable and invalid messages land in the dead-letter queue with the reason and a fixed
/// error type in headers, the body unchanged; and the service goes on to rank the next job,
/// so no actor died.
#[tokio::test(flavor = "multi_thread")]
async fn poison_goes_to_the_dead_letter_queue_with_its_reason() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "poison");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(3).collect();
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("poison.results").await;

    let garbage = b"\xff\xff\xff\xff not protobuf".to_vec();
    let properties = BasicProperties::default().with_type("qrank.v1.RankJob".into());
    broker.publish_raw(&garbage, properties).await;
    let (body, headers) = broker
        .dead_letter(Duration::from_secs(20))
        .await
        .expect("a dead letter");
    assert_eq!(body, garbage);
    assert_eq!(headers.get("x-qrank-error-type").map(String::as_str), Some("decode"));
    assert!(headers["x-qrank-reason"].contains("undecodable RankJob"), "{headers:?}");

    let invalid = RankJob {
        job_id: "no spaces allowed".into(),
        ..job(&sandbox, "x", "poison.results")
    };
    broker.publish_job(&invalid).await;
    let (_, headers) = broker
        .dead_letter(Duration::from_secs(20))
        .await
        .expect("a dead letter");
    assert_eq!(headers.get("x-qrank-error-type").map(String::as_str), Some("invalid"));
    assert!(headers["x-qrank-reason"].contains("job_id"), "{headers:?}");

    broker
        .publish_job(&job(&sandbox, "job-after-poison", "poison.results"))
        .await;
    let (result, _) = Broker::next_result(&mut results, RESULT_TIMEOUT)
        .await
        .expect("a result after poison");
    assert_eq!(result.items.len(), photos.len());
    let metrics = service.metrics().await;
    assert_eq!(
        metrics.value("qrank_job_dead_lettered_total{error_type=\"decode\"}"),
        1.0
    );
    assert_eq!(
        metrics.value("qrank_job_dead_lettered_total{error_type=\"invalid\"}"),
        1.0
    );
    assert_eq!(metrics.value("qrank_actor_restarts_total{actor=\"job_source\"}"), 0.0);
    assert_eq!(broker.jobs_waiting().await, 0);
    broker.close().await;
}

/// A job that lists its keys ranks exactly those, without listing the prefix; a key that does
/// not exist is reported as that image's `fetch` error.
#[tokio::test(flavor = "multi_thread")]
async fn an_explicit_key_list_ranks_only_those_keys() {
    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "keys");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(4).collect();
    let names = sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("keys.results").await;

    let wanted = vec![names[0].clone(), names[2].clone(), "missing.jpg".to_owned()];
    let keyed = RankJob {
        keys: wanted.clone(),
        ..job(&sandbox, "job-keys", "keys.results")
    };
    broker.publish_job(&keyed).await;
    let (result, _) = Broker::expect_result(&mut results, RESULT_TIMEOUT, &[&service]).await;
    let ranked: BTreeSet<String> = result.items.iter().map(|i| i.uri.clone()).collect();
    let expected: BTreeSet<String> = wanted[..2]
        .iter()
        .map(|n| format!("{}{n}", sandbox.url("images")))
        .collect();
    assert_eq!(ranked, expected);
    assert_eq!(result.errors.len(), 1, "{:?}", result.errors);
    assert_eq!(result.errors[0].kind, "fetch");
    assert!(result.errors[0].uri.ends_with("/missing.jpg"), "{:?}", result.errors[0]);
    broker.close().await;
}

/// A job that asks for progress gets `RankProgress` messages on its progress key, stage by
/// stage, ending with DONE and the counts of the finished job.
#[tokio::test(flavor = "multi_thread")]
async fn progress_is_reported_stage_by_stage() {
    use futures::StreamExt;
    use prost::Message;
    use protos::v1::{RankProgress, Stage};

    let Some(servers) = Servers::from_env() else { return };
    let sandbox = Sandbox::new(&servers, "progress");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(3).collect();
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut progress = broker.results("progress.updates").await;

    let asking = RankJob {
        progress_routing_key: "progress.updates".into(),
        ..job(&sandbox, "job-progress", "progress.results")
    };
    broker.publish_job(&asking).await;
    let mut stages = Vec::new();
    while stages.last() != Some(&Stage::Done) {
        let delivery = tokio::time::timeout(RESULT_TIMEOUT, progress.next())
            .await
            .unwrap_or_else(|_| panic!("no DONE progress after {stages:?}:\n{}", service.log()))
            .expect("a delivery")
            .expect("a delivery");
        assert_eq!(
            delivery.properties.kind().as_ref().map(|k| k.as_str()),
            Some("qrank.v1.RankProgress")
        );
        let update = RankProgress::decode(delivery.data.as_slice()).expect("a RankProgress");
        assert_eq!(update.job_id, "job-progress");
        if update.stage() == Stage::Done {
            assert_eq!(update.num_images_loaded, photos.len() as u64);
        }
        stages.push(update.stage());
    }
    assert_eq!(stages, [Stage::Loading, Stage::Fitting, Stage::Done]);
    broker.close().await;
}
