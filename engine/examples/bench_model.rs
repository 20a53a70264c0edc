//! CPU timings of the Co-Instruct network, for `scripts/bench_model.sh` to set beside
//! transformers and Pillow.
//!
//! `bench_model CHECKPOINT_DIR ITERS [JPEG...]` loads the checkpoint (any size, through the
//! real loader, f32 on the CPU) and prints one JSON object: milliseconds per preprocessed image
//! (decoded RGB → normalised pixels), per vision-tower forward of 4 images, per abstractor
//! forward of 4 images, and per language-model prefill of a group-of-4 prompt.

use std::time::Instant;

use engine::model::parity::Probe;

/// Fastest of `iters` runs of `f` in milliseconds, after one warm-up run: the least disturbed
/// by other load on a shared machine.
fn time_ms(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut runs: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[0]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, iters, jpegs @ ..] = args.as_slice() else {
        eprintln!("usage: bench_model CHECKPOINT_DIR ITERS [JPEG...]");
        std::process::exit(64);
    };
    let iters: usize = iters.parse().expect("ITERS is a number");
    let probe = Probe::load(dir).expect("loading the checkpoint");

    let decoded: Vec<_> = jpegs
        .iter()
        .map(|p| image::open(p).expect("decoding").to_rgb8())
        .collect();
    let preprocess_ms = if decoded.is_empty() {
        f64::NAN
    } else {
        time_ms(iters, || {
            for img in &decoded {
                let square = probe.preprocess_rgb8(img);
                probe.pixel_values(&[&square]).expect("pixels");
            }
        }) / decoded.len() as f64
    };

    let grey = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let square = probe.preprocess_rgb8(&grey);
    let pixels = probe
        .pixel_values(&[&square, &square, &square, &square])
        .expect("pixels");
    let vision_ms = time_ms(iters, || {
        probe.vision(&pixels).expect("vision");
    });
    let patches = probe.vision(&pixels).expect("vision");
    let abstractor_ms = time_ms(iters, || {
        probe.abstractor(&patches).expect("abstractor");
    });
    let (_, images) = probe.abstractor(&patches).expect("abstractor");
    // The layout of a group-of-4 prompt: BOS, an intro before each image, then the question.
    let mut ids: Vec<i64> = vec![1];
    for k in 0..4 {
        ids.extend((0..7).map(|i| 100 + i + 10 * k));
        ids.push(-200);
    }
    ids.extend((0..19).map(|i| 300 + i));
    let seq_len = ids.len() - 4 + 4 * images.dim(1).expect("tokens");
    let llm_ms = time_ms(iters, || {
        probe.prefill(&ids, &images).expect("prefill");
    });
    println!(
        "{{\"preprocess_ms_per_image\": {preprocess_ms:.3}, \"vision_ms_batch4\": {vision_ms:.3}, \
         \"abstractor_ms_batch4\": {abstractor_ms:.3}, \"llm_prefill_ms\": {llm_ms:.3}, \"llm_seq_len\": {seq_len}}}"
    );
}
