//! `CoInstruct`: the model as a [`Comparator`] (group scoring) and as an open question answerer.
//!
//! Group scoring asks one multiple-choice question whose options are letters naming the images.
//! Stage 1 is the softmax over the option letters' logits at the answer position, from a single
//! prefill. Each later stage continues the same conversation from the KV cache: the chosen
//! letter and `</s>` close the answer, and a follow-up turn asks for the best of the images left.
//! A full ranking of 4 therefore costs one prefill plus two short continuations.

use std::path::PathBuf;
use std::sync::Mutex;

use candle_core::Tensor;

use super::cache::EmbeddingCache;
use super::config::Config;
use super::device::DeviceKind;
use super::error::{Context, ModelError};
use super::language::KvCache;
use super::loader::{self, Checkpoint};
use super::network::Network;
use super::precision::Precision;
use super::preprocess;
use super::prompt::{chat_turn, choice_question, image_intro, PromptTokenizer};
use crate::compare::{CacheStats, Comparator, CompareError, Criterion, GroupOutcome, Stage};
use crate::image::Image;

/// The default bound on the cache of per-image tokens: about 1,000 images in bf16, 500 in f32.
pub const DEFAULT_EMBEDDING_CACHE_BYTES: usize = 512 << 20;

/// How to load a checkpoint.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceKind,
    /// `Auto` picks f32 on the CPU and bf16 on CUDA.
    pub precision: Precision,
    /// A `tokenizer.json` or `tokenizer.model` to use instead of the checkpoint's own.
    pub tokenizer: Option<PathBuf>,
    /// Bound on the cache of per-image tokens (about 1 MiB per image for the real model in f32).
    pub embedding_cache_bytes: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceKind::Cpu,
            precision: Precision::Auto,
            tokenizer: None,
            embedding_cache_bytes: DEFAULT_EMBEDDING_CACHE_BYTES,
        }
    }
}

/// The Co-Instruct model, ready to compare images or answer questions about them.
#[derive(Debug)]
pub struct CoInstruct {
    pub(super) net: Network,
    tokenizer: PromptTokenizer,
    cache: Mutex<EmbeddingCache>,
    model_id: String,
    /// The precision it was loaded in, resolved (never `Auto`).
    precision: Precision,
}

impl CoInstruct {
    /// Loads `source`: a local checkpoint folder, or a hub id such as `q-future/co-instruct`
    /// (optionally `id@revision`), downloaded through the Hugging Face cache.
    pub fn load(source: &str, options: &LoadOptions) -> Result<Self, ModelError> {
        // Refuse a precision the device cannot take before downloading or opening anything.
        options.precision.on(options.device)?;
        Self::from_checkpoint(&Checkpoint::locate(source)?, options)
    }

    /// Loads a checkpoint already located (and downloaded), as [`CoInstruct::load`] does: for
    /// loading one on several devices, or after counting its weights, without asking the hub
    /// again.
    pub fn from_checkpoint(checkpoint: &Checkpoint, options: &LoadOptions) -> Result<Self, ModelError> {
        let precision = options.precision.on(options.device)?;
        let source = checkpoint.source();
        let device = options.device.open()?;
        let tokenizer_path = options
            .tokenizer
            .clone()
            .or_else(|| checkpoint.tokenizer.clone())
            .ok_or_else(|| ModelError::NoTokenizer {
                dir: PathBuf::from(source),
            })?;
        let net = Network::load(checkpoint, precision, &device)?;
        let tokenizer = PromptTokenizer::new(
            loader::read_tokenizer(&tokenizer_path)?,
            &tokenizer_path,
            net.config.bos_token_id,
            net.config.eos_token_id,
        )?;
        let model_id = source.trim_end_matches('/').to_string();
        Ok(Self {
            net,
            tokenizer,
            cache: Mutex::new(EmbeddingCache::new(options.embedding_cache_bytes)),
            model_id,
            precision,
        })
    }

    /// The checkpoint's configuration.
    pub fn config(&self) -> &Config {
        &self.net.config
    }

    /// Answers `question` about up to four images, greedily, until `</s>` or `max_new_tokens`.
    pub fn answer(&self, images: &[&Image], question: &str, max_new_tokens: usize) -> Result<String, ModelError> {
        if images.len() > 4 {
            return Err(ModelError::Prompt(format!(
                "{} images; at most 4 fit the prompt",
                images.len()
            )));
        }
        let tokens = self.image_tokens(images)?;
        let text = chat_turn(&format!("{}{}", image_intro(images.len()), question.trim()));
        let (embeds, modalities) = self.net.splice(&self.tokenizer.prompt(&text)?, &tokens)?;
        let answer = self
            .net
            .greedy(&embeds, &modalities, max_new_tokens, Some(self.tokenizer.eos), drop)?;
        self.tokenizer.decode(&answer)
    }

    /// The 65 language-model tokens of each image, from the cache where possible; the misses
    /// go through the vision tower and abstractor as one batch.
    fn image_tokens(&self, images: &[&Image]) -> Result<Vec<Tensor>, ModelError> {
        let mut found: Vec<Option<Tensor>> = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            images.iter().map(|img| cache.get(img.content_hash)).collect()
        };
        let missing: Vec<usize> = (0..images.len()).filter(|&i| found[i].is_none()).collect();
        if !missing.is_empty() {
            let size = self.net.image_size();
            let squares: Vec<_> = missing
                .iter()
                .map(|&i| preprocess::square_resize(&images[i].rgb, size))
                .collect();
            let pixels = self.net.pixel_values(&squares.iter().collect::<Vec<_>>())?;
            let tokens = self.net.encode_images(&pixels)?;
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            for (row, &i) in missing.iter().enumerate() {
                // An owned copy: a view would keep the whole batch alive behind the byte count.
                let t = tokens
                    .get(row)
                    .and_then(|t| t.copy())
                    .ctx(|| format!("image tokens of {}", images[i].name))?;
                cache.insert(images[i].content_hash, t.clone());
                found[i] = Some(t);
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Softmax over the logits of the option letters for `n` options, at the last position.
    fn letter_probs(&self, hidden: &Tensor, n: usize) -> Result<Vec<f64>, ModelError> {
        let ids = Tensor::new(&self.tokenizer.letters[..n], hidden.device()).ctx(|| "letter ids".into())?;
        let logits: Vec<f32> = self
            .net
            .language
            .last_logits(hidden)
            .and_then(|l| l.index_select(&ids, 0)?.to_vec1())
            .ctx(|| "option letter logits".into())?;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        Ok(exp.into_iter().map(|e| e / total).collect())
    }

    fn stages(&self, group: &[&Image], criterion: &Criterion) -> Result<GroupOutcome, ModelError> {
        let n = group.len();
        let tokens = self.image_tokens(group)?;
        let mut remaining: Vec<usize> = (0..n).collect();
        let text = chat_turn(&format!(
            "{}{}",
            image_intro(n),
            choice_question(criterion, &remaining, false)
        ));
        let (embeds, modalities) = self.net.splice(&self.tokenizer.prompt(&text)?, &tokens)?;
        let lm = &self.net.language;
        let mut cache = KvCache::default();
        let mut hidden = lm
            .forward(&embeds, &modalities, &mut cache, false)
            .ctx(|| "group prefill".into())?
            .hidden;
        let mut stages = Vec::new();
        loop {
            let probs = self.letter_probs(&hidden, remaining.len())?;
            let best = probs
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i);
            stages.push(Stage {
                slots: remaining.iter().map(|&s| s as u8).collect(),
                probs,
            });
            if remaining.len() <= 2 {
                break;
            }
            // Close the answer with the chosen letter, then ask about the images left.
            let mut ids = vec![self.tokenizer.letters[best], self.tokenizer.eos];
            remaining.remove(best);
            ids.extend(
                self.tokenizer
                    .continuation(&chat_turn(&choice_question(criterion, &remaining, true)))?,
            );
            let embeds = lm.embed(&ids).ctx(|| "follow-up embedding".into())?;
            hidden = lm
                .forward(&embeds, &vec![0; ids.len()], &mut cache, false)
                .ctx(|| format!("stage {} continuation", stages.len() + 1))?
                .hidden;
        }
        Ok(GroupOutcome { stages })
    }
}

impl Comparator for CoInstruct {
    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    /// Keeps only the padded, resized square the vision tower sees (448² RGB8, 588 KiB).
    fn prepare(&self, image: Image) -> Image {
        let rgb = preprocess::square_resize(&image.rgb, self.net.image_size());
        Image { rgb, ..image }
    }

    fn compare(&self, group: &[&Image], criterion: &Criterion) -> Result<GroupOutcome, CompareError> {
        if !(2..=4).contains(&group.len()) {
            return Err(CompareError::GroupSize(group.len()));
        }
        self.stages(group, criterion).map_err(|e| match e {
            ModelError::Image { image, reason } => CompareError::Image { image, reason },
            other => CompareError::Model(other.to_string()),
        })
    }

    fn cache_stats(&self) -> Option<CacheStats> {
        Some(self.cache.lock().unwrap_or_else(|e| e.into_inner()).stats())
    }

    fn precision(&self) -> Option<String> {
        Some(self.precision.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A word-level tokenizer over the prompt vocabulary, ids below the tiny model's 512.
    fn tiny_tokenizer_json() -> String {
        let words = [
            "<unk>",
            "<s>",
            "</s>",
            "A",
            "B",
            "C",
            "D",
            "USER",
            "ASSISTANT",
            ":",
            "The",
            "first",
            "second",
            "third",
            "fourth",
            "image",
            "Which",
            "has",
            "better",
            "best",
            "overall",
            "quality",
            "?",
            ".",
            "Of",
            "the",
            "remaining",
            "images",
            "Answer",
            "with",
            "option",
            "'",
            "s",
            "letter",
            "from",
            "given",
            "choices",
            "directly",
            "<|",
            "|>",
            "sharp",
            "why",
        ];
        let vocab: serde_json::Map<String, serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
            .collect();
        let special = |id: usize, content: &str| {
            serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                               "rstrip": false, "normalized": false, "special": true})
        };
        serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
            "normalizer": null,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
            },
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
        })
        .to_string()
    }

    /// The tiny golden checkpoint laid out as a hub folder, with the test tokenizer.
    fn tiny_checkpoint() -> tempfile::TempDir {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/coinstruct-tiny");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(golden.join("config.json"), dir.path().join("config.json")).unwrap();
        std::fs::copy(golden.join("weights.safetensors"), dir.path().join("model.safetensors")).unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tiny_tokenizer_json()).unwrap();
        dir
    }

    fn load(dir: &Path, cache_bytes: usize) -> CoInstruct {
        let options = LoadOptions {
            embedding_cache_bytes: cache_bytes,
            ..LoadOptions::default()
        };
        CoInstruct::load(dir.to_str().unwrap(), &options).unwrap()
    }

    fn image(seed: u32, w: u32, h: u32) -> Image {
        let rgb = image::RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 7 + y * 13 + seed * 31) % 256;
            image::Rgb([v as u8, (v * 3 % 256) as u8, (255 - v) as u8])
        });
        Image {
            name: format!("img{seed}"),
            content_hash: u64::from(seed) + 1000,
            rgb,
        }
    }

    #[test]
    fn stages_are_distributions_over_the_images_left() {
        let dir = tiny_checkpoint();
        let model = load(dir.path(), 1 << 20);
        let images: Vec<Image> = (0..4).map(|i| model.prepare(image(i, 40 + i * 30, 60))).collect();
        let group: Vec<&Image> = images.iter().collect();
        let outcome = model.compare(&group, &Criterion::Overall).unwrap();
        assert_eq!(outcome.stages.len(), 3);
        assert_eq!(outcome.stages[0].slots, vec![0, 1, 2, 3]);
        for (k, stage) in outcome.stages.iter().enumerate() {
            assert_eq!(stage.slots.len(), 4 - k);
            assert_eq!(stage.probs.len(), stage.slots.len());
            assert!((stage.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(stage.probs.iter().all(|&p| p > 0.0));
            if let Some(next) = outcome.stages.get(k + 1) {
                // The next stage offers exactly the slots left once this stage's winner is out.
                let best = stage
                    .probs
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .unwrap()
                    .0;
                let mut left = stage.slots.clone();
                left.remove(best);
                assert_eq!(next.slots, left);
            }
        }
        let pair = model.compare(&group[..2], &Criterion::Sharpness).unwrap();
        assert_eq!(pair.stages.len(), 1);
        assert_eq!(pair.stages[0].slots, vec![0, 1]);
    }

    #[test]
    fn options_follow_the_images_not_their_positions() {
        // The letter logits come from one prompt; swapping two identical images must not
        // change the distribution, while the slots keep naming positions.
        let dir = tiny_checkpoint();
        let model = load(dir.path(), 1 << 20);
        let (a, b) = (model.prepare(image(1, 50, 50)), model.prepare(image(2, 80, 40)));
        let ab = model.compare(&[&a, &b], &Criterion::Overall).unwrap();
        let ba = model.compare(&[&b, &a], &Criterion::Overall).unwrap();
        // The model is random, so only the bookkeeping is checked: each outcome is over its
        // own two slots and both are proper distributions, and re-asking is deterministic.
        assert_eq!(ab.stages[0].slots, ba.stages[0].slots);
        assert_eq!(model.compare(&[&a, &b], &Criterion::Overall).unwrap(), ab);
        assert_ne!(ab, ba, "image order must reach the prompt");
    }

    #[test]
    fn cached_image_tokens_give_the_same_outcome() {
        let dir = tiny_checkpoint();
        let cached = load(dir.path(), 16 << 20);
        let uncached = load(dir.path(), 0);
        let images: Vec<Image> = (0..4).map(|i| cached.prepare(image(i, 30 + 20 * i, 45))).collect();
        cached.compare(&[&images[1], &images[2]], &Criterion::Noise).unwrap();
        let group = [&images[0], &images[1], &images[2], &images[3]];
        let warm = cached.compare(&group, &Criterion::Noise).unwrap();
        let cold = uncached.compare(&group, &Criterion::Noise).unwrap();
        for (w, c) in warm.stages.iter().zip(&cold.stages) {
            assert_eq!(w.slots, c.slots);
            for (pw, pc) in w.probs.iter().zip(&c.probs) {
                assert!((pw - pc).abs() < 1e-6, "{pw} vs {pc}");
            }
        }
        assert_eq!(cached.cache.lock().unwrap().len(), 4);
        assert_eq!(uncached.cache.lock().unwrap().len(), 0);
        // The pair missed twice; the group found those two and missed the other two.
        let stats = cached.cache_stats().unwrap();
        assert_eq!((stats.hits, stats.misses), (2, 4));
        assert!(stats.bytes > 0);
        assert_eq!(uncached.cache_stats().unwrap().bytes, 0);
    }

    #[test]
    fn group_sizes_outside_two_to_four_are_refused() {
        let dir = tiny_checkpoint();
        let model = load(dir.path(), 0);
        let img = model.prepare(image(0, 20, 20));
        assert!(matches!(
            model.compare(&[&img], &Criterion::Overall),
            Err(CompareError::GroupSize(1))
        ));
        let five = [&img; 5];
        assert!(matches!(
            model.compare(&five, &Criterion::Overall),
            Err(CompareError::GroupSize(5))
        ));
    }

    #[test]
    fn prepare_keeps_only_the_model_square() {
        let dir = tiny_checkpoint();
        let model = load(dir.path(), 0);
        let prepared = model.prepare(image(3, 900, 300));
        assert_eq!(prepared.rgb.dimensions(), (448, 448));
        assert_eq!(prepared.content_hash, 1003);
    }

    #[test]
    fn answer_stops_at_the_token_limit() {
        let dir = tiny_checkpoint();
        let model = load(dir.path(), 0);
        let a = model.prepare(image(1, 30, 30));
        let text = model
            .answer(&[&a], "Which image has better quality, and why?", 5)
            .unwrap();
        assert!(text.split_whitespace().count() <= 5, "{text:?}");
        assert!(model.answer(&[&a; 5], "why?", 1).is_err());
    }

    #[test]
    fn missing_tokenizer_is_reported_with_the_folder() {
        let dir = tiny_checkpoint();
        std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
        let err = CoInstruct::load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap_err();
        assert!(matches!(err, ModelError::NoTokenizer { .. }), "{err}");
    }
}
