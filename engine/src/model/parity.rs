//! Stage-by-stage access to the network for the golden parity tests (`tests/model_golden.rs`).
//!
//! Not a stable API: it exposes candle tensors and the reference's stage boundaries so that
//! each stage can be checked on its own. It loads through the same loader (`loader.rs`) as
//! [`super::CoInstruct::load`], in f32 on the CPU.

use candle_core::Tensor;
use image::RgbImage;

use super::comparator::CoInstruct;
use super::device::DeviceKind;
use super::error::{Context, ModelError};
use super::language::KvCache;
use super::loader::Checkpoint;
use super::network::Network;
use super::precision::Precision;
use super::preprocess;
use super::prompt::pieces_from_ids;

/// Every LLM stage the reference records for one prompt.
#[derive(Debug)]
pub struct Prefill {
    pub inputs_embeds: Tensor,
    pub modality_indicators: Vec<u8>,
    pub layer0_out: Tensor,
    pub final_hidden: Tensor,
    pub logits: Tensor,
}

/// The network, opened for stage-by-stage checks.
#[derive(Debug)]
pub struct Probe {
    net: Network,
}

impl Probe {
    /// Loads `source` (folder or hub id) in f32 on the CPU.
    pub fn load(source: &str) -> Result<Self, ModelError> {
        Self::load_on(source, DeviceKind::Cpu, Precision::F32)
    }

    /// Loads `source` on another device or in another precision (device checks).
    pub fn load_on(source: &str, kind: DeviceKind, precision: Precision) -> Result<Self, ModelError> {
        let precision = precision.on(kind)?;
        let checkpoint = Checkpoint::locate(source)?;
        Ok(Self {
            net: Network::load(&checkpoint, precision, &kind.open()?)?,
        })
    }

    /// The stages of a loaded comparator, sharing its weights (benches time both without
    /// loading the checkpoint twice).
    pub fn of(model: &CoInstruct) -> Self {
        Self { net: model.net.clone() }
    }

    /// Moves a reference tensor to the model's device, and to its dtype when it is a float.
    pub fn to_model(&self, t: &Tensor) -> Result<Tensor, ModelError> {
        t.to_device(self.net.device())
            .and_then(|t| {
                if t.dtype().is_float() {
                    t.to_dtype(self.net.dtype())
                } else {
                    Ok(t)
                }
            })
            .ctx(|| "moving a reference tensor".into())
    }

    /// Decoded RGB8 → the preprocessed square RGB8 the model sees.
    pub fn preprocess_rgb8(&self, img: &RgbImage) -> RgbImage {
        preprocess::square_resize(img, self.net.image_size())
    }

    /// Preprocessed images → `pixel_values [b, 3, s, s]`.
    pub fn pixel_values(&self, images: &[&RgbImage]) -> Result<Tensor, ModelError> {
        self.net.pixel_values(images)
    }

    pub fn vision_embeddings(&self, pixels: &Tensor) -> Result<Tensor, ModelError> {
        self.net.vision_embeddings(pixels)
    }

    pub fn vision(&self, pixels: &Tensor) -> Result<Tensor, ModelError> {
        self.net.vision(pixels)
    }

    /// `(encoder_output, output)` of the abstractor for vision `last_hidden_state`.
    pub fn abstractor(&self, vision: &Tensor) -> Result<(Tensor, Tensor), ModelError> {
        let out = self.net.abstract_patches(vision)?;
        Ok((out.encoder_output, out.tokens))
    }

    fn image_rows(images: &Tensor) -> Result<Vec<Tensor>, ModelError> {
        let n = images.dim(0).ctx(|| "image tokens".into())?;
        (0..n).map(|i| images.get(i).ctx(|| format!("image {i}"))).collect()
    }

    /// One forward pass over `ids` (with `-200` per image), images `[k, 65, hidden]` in order.
    pub fn prefill(&self, ids: &[i64], images: &Tensor) -> Result<Prefill, ModelError> {
        let (inputs_embeds, modality_indicators) =
            self.net.splice(&pieces_from_ids(ids)?, &Self::image_rows(images)?)?;
        let out = self
            .net
            .language
            .forward(&inputs_embeds, &modality_indicators, &mut KvCache::default(), true)
            .ctx(|| "language model forward".into())?;
        let logits = self.net.language.logits(&out.hidden).ctx(|| "lm_head".into())?;
        let layer0_out = out
            .layer_outputs
            .first()
            .cloned()
            .ok_or_else(|| ModelError::Prompt("no layers".into()))?;
        Ok(Prefill {
            inputs_embeds,
            modality_indicators,
            layer0_out,
            final_hidden: out.hidden,
            logits,
        })
    }

    /// Greedy decoding of `steps` tokens with the KV cache: the tokens and the logits that
    /// chose each one (`[steps, vocab]`).
    pub fn generate(&self, ids: &[i64], images: &Tensor, steps: usize) -> Result<(Vec<u32>, Tensor), ModelError> {
        let (embeds, modalities) = self.net.splice(&pieces_from_ids(ids)?, &Self::image_rows(images)?)?;
        let mut all_logits = Vec::new();
        let tokens = self
            .net
            .greedy(&embeds, &modalities, steps, None, |logits| all_logits.push(logits))?;
        let stacked = Tensor::stack(&all_logits, 0).ctx(|| "stacking logits".into())?;
        Ok((tokens, stacked))
    }

    /// Decoding with the KV cache, fed `tokens` whatever it would choose (teacher forcing): row
    /// `i` of the result (`[tokens.len(), vocab]`) holds the logits that chose `tokens[i]`. Unlike
    /// [`Probe::generate`], one near tie decided the other way does not change every later step.
    pub fn forced(&self, ids: &[i64], images: &Tensor, tokens: &[u32]) -> Result<Tensor, ModelError> {
        let (embeds, modalities) = self.net.splice(&pieces_from_ids(ids)?, &Self::image_rows(images)?)?;
        let mut rows = Vec::with_capacity(tokens.len());
        self.net.decode(&embeds, &modalities, tokens.len(), |step, logits| {
            rows.push(logits);
            Ok(Some(tokens[step]))
        })?;
        Tensor::stack(&rows, 0).ctx(|| "stacking logits".into())
    }
}
