//! Timings of Co-Instruct group calls on a device, for `scripts/gpu_check.sh` to set beside
//! PyTorch (`scripts/bench_gpu.py`) on the same card.
//!
//! `bench_calls CHECKPOINT_DIR TOKENIZER cpu|cuda PRECISION RUNS IMAGE...` loads the checkpoint
//! through the real loader as the comparator the service runs, and reads its stages through the
//! parity tests' probe, which shares its weights. It prints the median milliseconds, over RUNS runs after two warm-ups, of
//! - each stage for a group of 4: vision tower, abstractor, language-model prefill of the
//!   group prompt's length, and one decoding step after it (from the KV cache);
//! - whole full-ranking calls of 4 images through [`Comparator::compare`] (one prefill and two
//!   continuations): "cold", where every image is new to the embedding cache, and "warm",
//!   where all four come from it, as when an image returns in a later round;
//!
//! then one JSON line with the same numbers, the decoder layers' count and the memory the
//! process holds once loaded and after the calls (Linux's `RssAnon`: the model's own memory, not
//! the pages of the mapped checkpoint, which the system may drop; `null` elsewhere). Every timed region ends by synchronising the device,
//! so the GPU's queued work is inside it.

use std::time::Instant;

use candle_core::Tensor;
use engine::compare::{Comparator, Criterion};
use engine::image::{decode, Image, Limits};
use engine::model::parity::Probe;
use engine::model::{CoInstruct, DeviceKind, LoadOptions, Precision};

/// Median of `runs` timed runs of `f` in milliseconds, after two warm-ups.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// This process's anonymous resident memory in MiB, from `/proc/self/status` where there is one.
fn anonymous_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?;
    let kib: f64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

fn json_mib(mib: Option<f64>) -> String {
    mib.map_or("null".to_string(), |m| format!("{m:.0}"))
}

fn sync(t: &Tensor) {
    t.device().synchronize().expect("synchronising the device");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, tokenizer, device, precision, runs, paths @ ..] = args.as_slice() else {
        eprintln!("usage: bench_calls CHECKPOINT_DIR TOKENIZER cpu|cuda auto|f32|bf16|f16|q8 RUNS IMAGE...");
        std::process::exit(64);
    };
    let device = if device == "cuda" {
        DeviceKind::Cuda(0)
    } else {
        DeviceKind::Cpu
    };
    let precision: Precision = precision.parse().expect("a precision");
    let runs: usize = runs.parse().expect("RUNS is a number");
    assert!(paths.len() >= 4, "give at least 4 images");
    let images: Vec<Image> = paths
        .iter()
        .map(|p| decode(p, &std::fs::read(p).expect("reading an image"), &Limits::default()).expect("decoding"))
        .collect();

    let load_start = Instant::now();
    let options = LoadOptions {
        device,
        precision,
        tokenizer: Some(tokenizer.into()),
        ..LoadOptions::default()
    };
    let model = CoInstruct::load(dir, &options).expect("loading the comparator");
    let load_s = load_start.elapsed().as_secs_f64();
    let loaded_rss = anonymous_rss_mib();
    let probe = Probe::of(&model);

    let squares: Vec<_> = images[..4].iter().map(|i| probe.preprocess_rgb8(&i.rgb)).collect();
    let pixels = probe.pixel_values(&squares.iter().collect::<Vec<_>>()).expect("pixels");
    let vision_ms = median_ms(runs, || sync(&probe.vision(&pixels).expect("vision")));
    let patches = probe.vision(&pixels).expect("vision");
    let abstractor_ms = median_ms(runs, || sync(&probe.abstractor(&patches).expect("abstractor").1));
    let (_, tokens) = probe.abstractor(&patches).expect("abstractor");
    // The layout of a group-of-4 prompt: BOS, an intro before each image, then the question.
    let mut ids: Vec<i64> = vec![1];
    for k in 0..4 {
        ids.extend((0..7).map(|i| 100 + i + 10 * k));
        ids.push(-200);
    }
    ids.extend((0..60).map(|i| 300 + i));
    let seq_len = ids.len() - 4 + 4 * tokens.dim(1).expect("tokens");
    let prefill_ms = median_ms(runs, || sync(&probe.prefill(&ids, &tokens).expect("prefill").logits));
    // `generate(n)` is the prefill and the n - 1 decoding steps after its first token; the
    // difference of two isolates a step.
    let one_token_ms = median_ms(runs, || sync(&probe.generate(&ids, &tokens, 1).expect("generate").1));
    let nine_tokens_ms = median_ms(runs, || sync(&probe.generate(&ids, &tokens, 9).expect("generate").1));
    let step_ms = (nine_tokens_ms - one_token_ms) / 8.0;

    let prepared: Vec<Image> = images.into_iter().map(|i| model.prepare(i)).collect();
    let mut fresh = 0u64;
    let mut call = |cold: bool| {
        let group: Vec<Image> = (0..4)
            .map(|k| {
                let mut img = prepared[(fresh as usize + k) % prepared.len()].clone();
                if cold {
                    fresh += 1;
                    img.content_hash = u64::MAX - fresh;
                }
                img
            })
            .collect();
        let outcome = model
            .compare(&group.iter().collect::<Vec<_>>(), &Criterion::Overall)
            .expect("group call");
        assert_eq!(outcome.stages.len(), 3, "a full ranking of 4 has three stages");
    };
    let cold_ms = median_ms(runs, || call(true));
    let warm_ms = median_ms(runs, || call(false));

    println!("load: {load_s:.1} s");
    println!("vision tower, 4 images: {vision_ms:.2} ms");
    println!("abstractor, 4 images: {abstractor_ms:.2} ms");
    println!("LLM prefill, {seq_len} tokens: {prefill_ms:.2} ms");
    println!("one decoding step: {step_ms:.2} ms");
    println!(
        "full-ranking call of 4, new images: {cold_ms:.2} ms ({:.2} calls/s)",
        1e3 / cold_ms
    );
    println!(
        "full-ranking call of 4, cached images: {warm_ms:.2} ms ({:.2} calls/s)",
        1e3 / warm_ms
    );
    println!(
        "{{\"vision_ms_batch4\": {vision_ms:.3}, \"abstractor_ms_batch4\": {abstractor_ms:.3}, \
         \"llm_seq_len\": {seq_len}, \"llm_prefill_ms\": {prefill_ms:.3}, \"decode_step_ms\": {step_ms:.3}, \
         \"call_cold_ms\": {cold_ms:.3}, \"call_warm_ms\": {warm_ms:.3}, \"load_s\": {load_s:.2}, \
         \"llm_layers\": {layers}, \"loaded_rss_anon_mib\": {loaded}, \"rss_anon_mib\": {rss}}}",
        layers = model.config().num_hidden_layers,
        loaded = json_mib(loaded_rss),
        rss = json_mib(anonymous_rss_mib()),
    );
}
