//! The mPLUG-Owl2 vision tower: CLIP ViT-L/14 at 448 pixels (1024 patches + CLS = 1025 tokens).
//!
//! Paper: mPLUG-Owl2 (arXiv 2311.04257), as fine-tuned in Co-Instruct (arXiv 2402.16641).
//! Reference: Q-Future/Q-Align `q_align/model/visual_encoder.py` (`MplugOwlVisionModel`).
//! Checkpoint: `q-future/co-instruct`, tensors under `model.vision_model.`.
//!
//! It differs from the HF CLIP vision model in two ways that matter for parity: the QKV
//! projection is one fused linear whose output is laid out per head as `[heads, 3, head_dim]`
//! (not `[3, heads, head_dim]`), and `post_layernorm` is applied to every token, not only CLS.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::VisionConfig;
use super::cpu_ops;
use super::layers::{attention, merge_heads, LayerNorm, Linear};

/// `x · sigmoid(1.702 x)`, the activation CLIP was trained with.
fn quick_gelu(x: Tensor) -> Result<Tensor> {
    if cpu_ops::is_cpu_f32(&x) && x.is_contiguous() {
        // `x` is fc1's fresh output, held nowhere else.
        cpu_ops::quick_gelu_in_place(&x)?;
        return Ok(x);
    }
    &x * candle_nn::ops::sigmoid(&(&x * 1.702)?)?
}

#[derive(Debug, Clone)]
struct Embeddings {
    cls_token: Tensor,
    /// The conv kernel `[hidden, channels, patch, patch]` flattened to `[hidden, channels·patch²]`,
    /// so the stride-`patch` convolution is one matrix product over unfolded patches.
    patch_weight: Tensor,
    position_embedding: Tensor,
    pre_layernorm: LayerNorm,
    patch_size: usize,
}

impl Embeddings {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let (h, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let num_tokens = (cfg.image_size / p).pow(2) + 1;
        let patch_weight = vb.get((h, c, p, p), "patch_embed.weight")?.reshape((h, c * p * p))?;
        Ok(Self {
            cls_token: vb.get((1, 1, h), "cls_token")?,
            patch_weight,
            position_embedding: vb.get((1, num_tokens, h), "position_embedding")?,
            pre_layernorm: LayerNorm::load(h, cfg.layer_norm_eps, vb.pp("pre_layernorm"))?,
            patch_size: p,
        })
    }

    fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let (b, c, height, width) = pixels.dims4()?;
        let p = self.patch_size;
        let (gh, gw) = (height / p, width / p);
        // [b, c, gh, p, gw, p] -> [b, gh, gw, c, p, p]: each row is one patch in (c, y, x) order,
        // the order of the conv kernel's flattened weights.
        let patches = pixels
            .reshape((b, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((b * gh * gw, c * p * p))?;
        let hidden = self.patch_weight.dim(0)?;
        let patches = patches.matmul(&self.patch_weight.t()?)?.reshape((b, gh * gw, hidden))?;
        let cls = self.cls_token.to_dtype(patches.dtype())?.broadcast_as((b, 1, hidden))?;
        let tokens = Tensor::cat(&[&cls, &patches], 1)?;
        let tokens = tokens.broadcast_add(&self.position_embedding.narrow(1, 0, gh * gw + 1)?)?;
        self.pre_layernorm.forward(&tokens)
    }
}

#[derive(Debug, Clone)]
struct SelfAttention {
    query_key_value: Linear,
    dense: Linear,
    num_heads: usize,
}

impl SelfAttention {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            query_key_value: Linear::load(h, 3 * h, true, vb.pp("query_key_value"))?,
            dense: Linear::load(h, h, true, vb.pp("dense"))?,
            num_heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let head_dim = h / self.num_heads;
        // Fused output is [heads, 3, head_dim] per token -> [3, b, heads, t, head_dim].
        let qkv = self
            .query_key_value
            .forward(x)?
            .reshape((b, t, self.num_heads, 3, head_dim))?
            .permute((3, 0, 2, 1, 4))?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let context = attention(&q, &k, &v, None)?;
        self.dense.forward(&merge_heads(&context)?)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    input_layernorm: LayerNorm,
    self_attn: SelfAttention,
    post_attention_layernorm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl EncoderLayer {
    fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(Self {
            input_layernorm: LayerNorm::load(h, eps, vb.pp("input_layernorm"))?,
            self_attn: SelfAttention::load(cfg, vb.pp("self_attn"))?,
            post_attention_layernorm: LayerNorm::load(h, eps, vb.pp("post_attention_layernorm"))?,
            fc1: Linear::load(h, i, true, vb.pp("mlp.fc1"))?,
            fc2: Linear::load(i, h, true, vb.pp("mlp.fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.input_layernorm.forward(x)?)?)?;
        let mlp = self.fc2.forward(&quick_gelu(
            self.fc1.forward(&self.post_attention_layernorm.forward(&x)?)?,
        )?)?;
        x + mlp
    }
}

/// The vision tower, `pixel_values [b, 3, 448, 448]` → `last_hidden_state [b, 1025, hidden]`.
#[derive(Debug, Clone)]
pub(crate) struct VisionTower {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
}

impl VisionTower {
    pub(crate) fn load(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::load(cfg, vb.pp(format!("encoder.layers.{i}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: Embeddings::load(cfg, vb.pp("embeddings"))?,
            layers,
            post_layernorm: LayerNorm::load(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("post_layernorm"))?,
        })
    }

    /// The embeddings after `pre_layernorm`, before the first encoder layer.
    pub(crate) fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        self.embeddings.forward(pixels)
    }

    /// The last hidden state after `post_layernorm`, for every token.
    pub(crate) fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut x = self.embed(pixels)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        self.post_layernorm.forward(&x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn quick_gelu_in_place_agrees_with_candles_ops() {
        // f32 on the CPU takes the in-place kernel, f64 the chain of candle ops.
        let xs = [-2.0f64, -0.3, 0.0, 0.5, 3.0, 40.0];
        let kernel: Vec<f32> = quick_gelu(Tensor::new(&xs, &Device::Cpu).unwrap().to_dtype(DType::F32).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        let ops: Vec<f64> = quick_gelu(Tensor::new(&xs, &Device::Cpu).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        for ((x, k), o) in xs.iter().zip(kernel).zip(ops) {
            assert!((f64::from(k) - o).abs() < 1e-5, "{x}: {k} vs {o}");
        }
    }
}
