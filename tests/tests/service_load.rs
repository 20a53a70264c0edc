//! A bounded load test of one `qrank serve` replica (ignored by default; `scripts/load_test.sh`
//! runs it): `QRANK_LOAD_JOBS` jobs (default 200) of `QRANK_LOAD_IMAGES` small generated images
//! each (default 50), all published at once. Every job must get exactly one result, none lost or
//! duplicated; it prints jobs per second, images per second and the replica's peak memory.

mod service_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use protos::v1::RankJob;
use service_support::{Broker, Sandbox, Servers, Service};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A `side` x `side` 24-bit BMP whose content depends on `seed`: a gradient with seeded noise,
/// so images differ in quality metrics.
fn bmp(side: u32, seed: u64) -> Vec<u8> {
    let row = (side * 3).div_ceil(4) * 4;
    let size = 54 + row * side;
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&(side as i32).to_le_bytes());
    out.extend_from_slice(&(side as i32).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise = (seed % 64) as u32;
    for y in 0..side {
        for x in 0..side {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let n = (state % (noise as u64 * 2 + 1)) as u32;
            let base = (x * 255 / side + y * 128 / side) % 256;
            let v = (base + n).saturating_sub(noise).min(255) as u8;
            out.extend_from_slice(&[v, v / 2 + 40, 255 - v]);
        }
        out.resize(out.len() + (row - side * 3) as usize, 0);
    }
    out
}

/// Peak resident memory of a process, from /proc (Linux), in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load test: run by scripts/load_test.sh"]
async fn many_jobs_through_one_replica_each_answered_once() {
    let Some(servers) = Servers::from_env() else { return };
    let num_jobs = env_usize("QRANK_LOAD_JOBS", 200);
    let num_images = env_usize("QRANK_LOAD_IMAGES", 50);
    let side = env_usize("QRANK_LOAD_IMAGE_SIDE", 48) as u32;
    let sandbox = Sandbox::new(&servers, "load");

    // Every job reads its own copy of the images, under its own prefix.
    let uploaded = Instant::now();
    let images: Vec<Vec<u8>> = (0..num_images).map(|i| bmp(side, i as u64)).collect();
    let puts = (0..num_jobs).flat_map(|j| (0..num_images).map(move |i| (j, i)));
    futures::stream::iter(puts)
        .for_each_concurrent(32, |(j, i)| {
            let (sandbox, bytes) = (&sandbox, images[i].clone());
            async move { sandbox.put(&format!("jobs/{j:04}/images/{i:06}.bmp"), bytes).await }
        })
        .await;
    eprintln!(
        "uploaded {} images in {:.1} s",
        num_jobs * num_images,
        uploaded.elapsed().as_secs_f64()
    );

    let settings = [("QRANK_AMQP__PREFETCH", "8"), ("QRANK_LOG__FILTER", "warn")];
    let service = Service::start(&sandbox, &settings).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("load.results").await;
    let started = Instant::now();
    for j in 0..num_jobs {
        let job = RankJob {
            job_id: format!("load-{j:04}"),
            source: sandbox.url(&format!("jobs/{j:04}/images")),
            output_prefix: sandbox.url(&format!("jobs/{j:04}/out")),
            reply_routing_key: "load.results".into(),
            ..RankJob::default()
        };
        broker.publish_job(&job).await;
    }
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Duration::from_secs(60 + num_jobs as u64 * num_images as u64 / 10);
    while answered.len() < num_jobs {
        let left = deadline.saturating_sub(started.elapsed());
        let Some((result, _)) = Broker::next_result(&mut results, left).await else {
            panic!("only {} of {num_jobs} jobs answered in {deadline:?}", answered.len());
        };
        assert_eq!(result.failure, "", "{}", result.job_id);
        assert_eq!(result.items.len(), num_images, "{}", result.job_id);
        *answered.entry(result.job_id).or_default() += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    // Nothing more arrives: no job was answered twice.
    assert!(Broker::next_result(&mut results, Duration::from_secs(3))
        .await
        .is_none());
    assert!(answered.values().all(|&n| n == 1));
    assert_eq!(broker.jobs_waiting().await, 0);
    let peak = peak_rss(service.pid()).unwrap_or(0);
    let metrics = service.metrics().await;
    assert_eq!(
        metrics.value("qrank_job_completed_total{outcome=\"ranked\"}"),
        num_jobs as f64
    );
    println!(
        "load: {num_jobs} jobs x {num_images} images ({side}x{side} BMP) in {seconds:.2} s: \
         {:.1} jobs/s, {:.0} images/s, peak RSS {:.0} MiB",
        num_jobs as f64 / seconds,
        (num_jobs * num_images) as f64 / seconds,
        peak as f64 / (1024.0 * 1024.0)
    );
    broker.close().await;
}
