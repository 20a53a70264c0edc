//! Golden parity of the Co-Instruct network: every stage against reference tensors made with
//! the original PyTorch code (see `golden/coinstruct-tiny/README.md` for provenance).
//!
//! Driven by the folder's `manifest.json`, so another golden set of the same form can be
//! checked without a code change: `QRANK_GOLDEN_DIR=/path/to/set cargo test --features
//! coinstruct --test model_golden`. The weights go through the same loader as the real
//! checkpoint (a folder with `config.json` and `model.safetensors`).
#![cfg(feature = "coinstruct")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use engine::model::parity::Probe;

/// CLIP's normalisation, to recover the uint8 pixels from `pixel_values`.
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

#[derive(serde::Deserialize)]
struct Manifest {
    pixel_values_files: Vec<String>,
    cases: Vec<String>,
    generation_cases: Vec<String>,
    atol_f32: f64,
}

struct Golden {
    dir: PathBuf,
    manifest: Manifest,
    tensors: HashMap<String, Tensor>,
    probe: Probe,
    /// Keeps the checkpoint folder alive while the model is mapped.
    _checkpoint: tempfile::TempDir,
}

impl Golden {
    fn open() -> Self {
        let dir = std::env::var_os("QRANK_GOLDEN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/coinstruct-tiny"));
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).expect("manifest.json"))
                .expect("manifest");
        let tensors = candle_core::safetensors::load(dir.join("cases.safetensors"), &Device::Cpu).expect("cases");
        // A checkpoint folder laid out as on the hub, so the real loader reads it.
        let checkpoint = tempfile::tempdir().unwrap();
        std::fs::copy(dir.join("config.json"), checkpoint.path().join("config.json")).unwrap();
        std::fs::copy(
            dir.join("weights.safetensors"),
            checkpoint.path().join("model.safetensors"),
        )
        .unwrap();
        let probe = Probe::load(checkpoint.path().to_str().unwrap()).expect("loading the tiny checkpoint");
        Self {
            dir,
            manifest,
            tensors,
            probe,
            _checkpoint: checkpoint,
        }
    }

    fn get(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from cases.safetensors"))
    }

    fn ids(&self, name: &str) -> Vec<i64> {
        self.get(name).flatten_all().unwrap().to_vec1().unwrap()
    }

    /// The tokens the reference generated greedily for a generation case.
    fn generated_ids(&self, case: &str) -> Vec<u32> {
        self.ids(&format!("{case}.generated_ids"))
            .into_iter()
            .map(|i| i as u32)
            .collect()
    }

    /// Abstractor outputs of the case's images, in order: `[k, 65, hidden]`.
    fn case_images(&self, case: &str) -> Tensor {
        let output = self.get("abstractor.output");
        match self.tensors.get(&format!("{case}.image_indices")) {
            Some(idx) => output
                .index_select(&idx.flatten_all().unwrap().to_dtype(DType::U32).unwrap(), 0)
                .unwrap(),
            None => output.narrow(0, 0, 0).unwrap(),
        }
    }

    fn assert_close(&self, what: &str, got: &Tensor, want: &Tensor) {
        assert_eq!(got.dims(), want.dims(), "{what}: shape");
        let diff = (got.to_dtype(DType::F32).unwrap() - want).unwrap().abs().unwrap();
        let max: f32 = diff.flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
        eprintln!("{what}: max abs diff {max:.3e}");
        assert!(
            max <= self.manifest.atol_f32 as f32,
            "{what}: max abs diff {max:e} > {}",
            self.manifest.atol_f32
        );
    }
}

#[test]
fn preprocessing_reproduces_pillow_bit_for_bit() {
    let g = Golden::open();
    let want = g.get("pixel_values");
    for (row, file) in g.manifest.pixel_values_files.iter().enumerate() {
        let img = image::open(g.dir.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .to_rgb8();
        let pre = g.probe.preprocess_rgb8(&img);
        let got = g.probe.pixel_values(&[&pre]).unwrap().get(0).unwrap();
        let want_row = want.get(row).unwrap();
        // The uint8 image the reference resized to, recovered from its normalised pixels.
        let reference: Vec<Vec<Vec<f32>>> = want_row.to_vec3().unwrap();
        let mut mismatched = 0;
        for (c, plane) in reference.iter().enumerate() {
            for (y, line) in plane.iter().enumerate() {
                for (x, &p) in line.iter().enumerate() {
                    let level = ((p * STD[c] + MEAN[c]) * 255.0).round() as u8;
                    mismatched += usize::from(pre.get_pixel(x as u32, y as u32).0[c] != level);
                }
            }
        }
        assert_eq!(mismatched, 0, "{file}: {mismatched} uint8 values differ from Pillow");
        let diff: f32 = (got - want_row)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert_eq!(diff, 0.0, "{file}: pixel_values differ by {diff}");
    }
}

#[test]
fn vision_tower_matches_reference() {
    let g = Golden::open();
    let pixels = g.get("pixel_values");
    g.assert_close(
        "vision.embeddings",
        &g.probe.vision_embeddings(pixels).unwrap(),
        g.get("vision.embeddings"),
    );
    g.assert_close(
        "vision.last_hidden_state",
        &g.probe.vision(pixels).unwrap(),
        g.get("vision.last_hidden_state"),
    );
}

#[test]
fn abstractor_matches_reference() {
    let g = Golden::open();
    let (encoder_output, output) = g.probe.abstractor(g.get("vision.last_hidden_state")).unwrap();
    g.assert_close(
        "abstractor.encoder_output",
        &encoder_output,
        g.get("abstractor.encoder_output"),
    );
    g.assert_close("abstractor.output", &output, g.get("abstractor.output"));
}

#[test]
fn images_to_image_tokens_end_to_end() {
    // The stages chained on our own outputs, so errors that only compound show up too.
    let g = Golden::open();
    let vision = g.probe.vision(g.get("pixel_values")).unwrap();
    let (_, output) = g.probe.abstractor(&vision).unwrap();
    g.assert_close("pixels -> abstractor.output", &output, g.get("abstractor.output"));
}

#[test]
fn language_model_matches_reference_for_every_case() {
    let g = Golden::open();
    assert!(!g.manifest.cases.is_empty());
    for case in &g.manifest.cases {
        let ids = g.ids(&format!("{case}.input_ids"));
        let out = g.probe.prefill(&ids, &g.case_images(case)).unwrap();
        let want_modality: Vec<u8> = g
            .ids(&format!("{case}.modality_indicators"))
            .into_iter()
            .map(|m| m as u8)
            .collect();
        assert_eq!(out.modality_indicators, want_modality, "{case}: modality indicators");
        g.assert_close(
            &format!("{case}.inputs_embeds"),
            &out.inputs_embeds,
            g.get(&format!("{case}.inputs_embeds")),
        );
        g.assert_close(
            &format!("{case}.hidden_states_layer0_out"),
            &out.layer0_out,
            g.get(&format!("{case}.hidden_states_layer0_out")),
        );
        g.assert_close(
            &format!("{case}.final_hidden_states"),
            &out.final_hidden,
            g.get(&format!("{case}.final_hidden_states")),
        );
        g.assert_close(&format!("{case}.logits"), &out.logits, g.get(&format!("{case}.logits")));
        let last = out.logits.i((.., out.logits.dim(1).unwrap() - 1, ..)).unwrap();
        g.assert_close(
            &format!("{case}.logits_last"),
            &last,
            g.get(&format!("{case}.logits_last")),
        );
    }
}

#[test]
fn teacher_forced_decoding_matches_reference_steps() {
    let g = Golden::open();
    for case in &g.manifest.generation_cases {
        let want_ids = g.generated_ids(case);
        let ids = g.ids(&format!("{case}.input_ids"));
        let logits = g.probe.forced(&ids, &g.case_images(case), &want_ids).unwrap();
        g.assert_close(
            &format!("{case}.generated_step_logits"),
            &logits,
            g.get(&format!("{case}.generated_step_logits")),
        );
    }
}

#[test]
fn greedy_generation_with_kv_cache_matches_reference() {
    let g = Golden::open();
    assert!(!g.manifest.generation_cases.is_empty());
    for case in &g.manifest.generation_cases {
        let want_ids = g.generated_ids(case);
        let ids = g.ids(&format!("{case}.input_ids"));
        let (tokens, logits) = g.probe.generate(&ids, &g.case_images(case), want_ids.len()).unwrap();
        assert_eq!(tokens, want_ids, "{case}: greedy tokens");
        g.assert_close(
            &format!("{case}.generated_step_logits"),
            &logits,
            g.get(&format!("{case}.generated_step_logits")),
        );
    }
}
