//! The assembled network: vision tower → abstractor → image tokens spliced into the prompt →
//! language model. Owns the device and dtype every tensor lives in.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use super::abstractor::{Abstractor, AbstractorOutput};
use super::config::Config;
use super::error::{Context, ModelError};
use super::language::{KvCache, LanguageModel, Modality};
use super::loader::{self, Checkpoint};
use super::precision::Precision;
use super::preprocess;
use super::prompt::Piece;
use super::vision::VisionTower;

#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) config: Config,
    vision: VisionTower,
    abstractor: Abstractor,
    pub(crate) language: LanguageModel,
    device: Device,
    dtype: DType,
}

impl Network {
    /// Loads the checkpoint in `precision`, a resolved one ([`Precision::on`]).
    pub(crate) fn load(checkpoint: &Checkpoint, precision: Precision, device: &Device) -> Result<Self, ModelError> {
        let config = loader::read_config(&checkpoint.config_path)?;
        let dtype = precision.dtype();
        let vb = loader::open_weights(&checkpoint.weights, dtype, device)?;
        let part = |name: &str| {
            let source = checkpoint.source.clone();
            let name = name.to_string();
            move || format!("loading the {name} of {source}")
        };
        let vision = VisionTower::load(&config.visual_config.visual_model, vb.pp("model.vision_model"))
            .ctx(part("vision tower"))?;
        let abstractor = Abstractor::load(
            &config.visual_config.visual_abstractor,
            config.hidden_size,
            vb.pp("model.visual_abstractor"),
        )
        .ctx(part("visual abstractor"))?;
        let language = LanguageModel::load(&config, vb, precision.quantizes_language()).ctx(part("language model"))?;
        Ok(Self {
            config,
            vision,
            abstractor,
            language,
            device: device.clone(),
            dtype,
        })
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn dtype(&self) -> DType {
        self.dtype
    }

    /// Side of the square the vision tower sees (448).
    pub(crate) fn image_size(&self) -> usize {
        self.config.visual_config.visual_model.image_size
    }

    /// Preprocessed RGB8 images (already `image_size` square) → `pixel_values [b, 3, s, s]`.
    pub(crate) fn pixel_values(&self, images: &[&RgbImage]) -> Result<Tensor, ModelError> {
        let s = self.image_size();
        let mut data = Vec::with_capacity(images.len() * 3 * s * s);
        for img in images {
            if (img.width() as usize, img.height() as usize) != (s, s) {
                return Err(ModelError::Image {
                    image: format!("{}x{}", img.width(), img.height()),
                    reason: format!("not preprocessed to {s}x{s}"),
                });
            }
            data.extend(preprocess::normalise(img));
        }
        Tensor::from_vec(data, (images.len(), 3, s, s), &Device::Cpu)
            .and_then(|t| t.to_device(&self.device)?.to_dtype(self.dtype))
            .ctx(|| "building pixel_values".into())
    }

    /// Vision embeddings after `pre_layernorm` (golden tests only).
    pub(crate) fn vision_embeddings(&self, pixels: &Tensor) -> Result<Tensor, ModelError> {
        self.vision.embed(pixels).ctx(|| "vision embeddings".into())
    }

    pub(crate) fn vision(&self, pixels: &Tensor) -> Result<Tensor, ModelError> {
        self.vision.forward(pixels).ctx(|| "vision tower forward".into())
    }

    pub(crate) fn abstract_patches(&self, patches: &Tensor) -> Result<AbstractorOutput, ModelError> {
        self.abstractor.forward(patches).ctx(|| "abstractor forward".into())
    }

    /// `pixel_values` → image tokens `[b, 65, llm_hidden]`.
    pub(crate) fn encode_images(&self, pixels: &Tensor) -> Result<Tensor, ModelError> {
        Ok(self.abstract_patches(&self.vision(pixels)?)?.tokens)
    }

    /// Embeds text pieces and puts the next image's tokens (`[65, hidden]` each, in order) at each
    /// image piece. Returns `[1, n, hidden]` and each position's modality.
    pub(crate) fn splice(&self, pieces: &[Piece], images: &[Tensor]) -> Result<(Tensor, Vec<Modality>), ModelError> {
        let wanted = pieces.iter().filter(|p| matches!(p, Piece::Image)).count();
        if wanted != images.len() {
            return Err(ModelError::Prompt(format!(
                "{wanted} image placeholders for {} images",
                images.len()
            )));
        }
        let mut images = images.iter();
        let mut parts = Vec::with_capacity(pieces.len());
        let mut modalities = Vec::new();
        for piece in pieces {
            let part = match piece {
                Piece::Text(ids) => {
                    modalities.extend(std::iter::repeat_n(0, ids.len()));
                    self.language
                        .embed(ids)
                        .ctx(|| format!("embedding {} token ids", ids.len()))?
                }
                Piece::Image => {
                    let tokens = images.next().expect("counted above");
                    let rows = tokens.dim(0).ctx(|| "image tokens".into())?;
                    modalities.extend(std::iter::repeat_n(1, rows));
                    tokens.unsqueeze(0).ctx(|| "image tokens".into())?
                }
            };
            parts.push(part);
        }
        let embeds = Tensor::cat(&parts, 1).ctx(|| "splicing the prompt".into())?;
        Ok((embeds, modalities))
    }

    /// Decoding with the KV cache from a spliced prompt, for at most `max_steps` tokens: `choose`
    /// sees each step's logits and names the token to feed back, or `None` to stop there. The one
    /// decoding loop, shared by open answers ([`Network::greedy`]) and the golden checks (greedy
    /// and teacher-forced). No forward pass follows the last step: nothing would read it.
    pub(crate) fn decode(
        &self,
        embeds: &Tensor,
        modalities: &[Modality],
        max_steps: usize,
        mut choose: impl FnMut(usize, Tensor) -> Result<Option<u32>, ModelError>,
    ) -> Result<Vec<u32>, ModelError> {
        let lm = &self.language;
        let mut cache = KvCache::default();
        let mut hidden = lm
            .forward(embeds, modalities, &mut cache, false)
            .ctx(|| "prefill".into())?
            .hidden;
        let mut tokens = Vec::new();
        for step in 0..max_steps {
            let logits = lm.last_logits(&hidden).ctx(|| format!("logits of step {step}"))?;
            let Some(next) = choose(step, logits)? else {
                break;
            };
            tokens.push(next);
            if step + 1 < max_steps {
                let embeds = lm.embed(&[next]).ctx(|| "embedding".into())?;
                hidden = lm
                    .forward(&embeds, &[0], &mut cache, false)
                    .ctx(|| format!("decode step {step}"))?
                    .hidden;
            }
        }
        Ok(tokens)
    }

    /// Greedy decoding: at most `max_steps` tokens, ending before `stop` when it is chosen.
    /// `on_logits` sees the logits that chose each step's token.
    pub(crate) fn greedy(
        &self,
        embeds: &Tensor,
        modalities: &[Modality],
        max_steps: usize,
        stop: Option<u32>,
        mut on_logits: impl FnMut(Tensor),
    ) -> Result<Vec<u32>, ModelError> {
        self.decode(embeds, modalities, max_steps, |step, logits| {
            let next = logits
                .argmax(0)
                .and_then(|t| t.to_scalar::<u32>())
                .ctx(|| format!("choosing token {step}"))?;
            on_logits(logits);
            Ok((Some(next) != stop).then_some(next))
        })
    }
}
