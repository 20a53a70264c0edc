//! The visual abstractor: 64 learned queries cross-attend to the 1025 patch tokens, then a
//! linear maps them to the language model's width and `vit_eos` is appended (65 tokens/image).
//!
//! Paper: mPLUG-Owl2 (arXiv 2311.04257), as fine-tuned in Co-Instruct (arXiv 2402.16641).
//! Reference: Q-Future/Q-Align `q_align/model/visual_encoder.py` (`MplugOwlVisualAbstractorModel`).
//! Checkpoint: `q-future/co-instruct`, tensors under `model.visual_abstractor.`.
//!
//! Details the reference fixes and parity depends on:
//! - keys and values are computed over `[norm1(queries); normk(patches)]`, and the keys (only)
//!   get the sin-cos position embeddings `[q_pos; k_pos]` added;
//! - the residual branch starts from the *normalised* queries, not the raw ones;
//! - `norm1`, `normk` and `norm2` are `nn.LayerNorm(dim)` with torch's default eps 1e-5, while
//!   `ffn_ln` uses the config's `layer_norm_eps`;
//! - the sin-cos buffers may be missing from a checkpoint; they are deterministic, so they are
//!   recomputed (in f32, the way the reference's NumPy code does) when absent.

use candle_core::{Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::AbstractorConfig;
use super::layers::{attention, merge_heads, split_heads, LayerNorm, Linear};

/// torch's default `nn.LayerNorm` eps, used by the reference for norm1, normk and norm2.
const TORCH_LAYER_NORM_EPS: f64 = 1e-5;

/// MAE-style 1-D sin-cos embedding: `[sin(pos·ω) | cos(pos·ω)]`, `ω_i = 10000^(−i/(dim/2))`.
fn sincos_1d(dim: usize, positions: &[f32]) -> Vec<f32> {
    let half = dim / 2;
    let omega: Vec<f32> = (0..half).map(|i| 1.0 / 10000f32.powf(i as f32 / half as f32)).collect();
    let mut out = Vec::with_capacity(positions.len() * dim);
    for &p in positions {
        out.extend(omega.iter().map(|&w| (p * w).sin()));
        out.extend(omega.iter().map(|&w| (p * w).cos()));
    }
    out
}

/// Position embeddings of the queries, `[num_queries, dim]`.
fn query_pos_embed(num_queries: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let positions: Vec<f32> = (0..num_queries).map(|i| i as f32).collect();
    Tensor::from_vec(sincos_1d(dim, &positions), (num_queries, dim), device)
}

/// 2-D sin-cos embeddings of the patch grid with a zero row for CLS first, `[1 + grid², dim]`.
/// As in the reference, the first half encodes the column and the second half the row.
fn patch_pos_embed(grid: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let cols: Vec<f32> = (0..grid * grid).map(|p| (p % grid) as f32).collect();
    let rows: Vec<f32> = (0..grid * grid).map(|p| (p / grid) as f32).collect();
    let (first, second) = (sincos_1d(dim / 2, &cols), sincos_1d(dim / 2, &rows));
    let mut out = vec![0f32; dim];
    for p in 0..grid * grid {
        out.extend_from_slice(&first[p * dim / 2..(p + 1) * dim / 2]);
        out.extend_from_slice(&second[p * dim / 2..(p + 1) * dim / 2]);
    }
    Tensor::from_vec(out, (1 + grid * grid, dim), device)
}

/// Loads a buffer when the checkpoint has it, and computes it otherwise.
fn buffer_or(
    vb: &VarBuilder,
    name: &str,
    shape: (usize, usize),
    compute: impl FnOnce() -> Result<Tensor>,
) -> Result<Tensor> {
    if vb.contains_tensor(name) {
        vb.get(shape, name)
    } else {
        compute()?.to_dtype(vb.dtype())
    }
}

#[derive(Debug, Clone)]
struct CrossAttentionLayer {
    norm1: LayerNorm,
    normk: LayerNorm,
    query: Linear,
    key: Linear,
    value: Linear,
    /// `[q_pos; k_pos]`, added to the keys' input.
    qk_pos_embed: Tensor,
    /// `q_pos`, added to the queries' input.
    q_pos_embed: Tensor,
    out_proj: Linear,
    norm2: LayerNorm,
    w1: Linear,
    w2: Linear,
    w3: Linear,
    ffn_ln: LayerNorm,
    num_heads: usize,
}

impl CrossAttentionLayer {
    fn load(cfg: &AbstractorConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i, enc) = (cfg.hidden_size, cfg.intermediate_size, cfg.encoder_hidden_size);
        let nq = cfg.num_learnable_queries;
        let attn = vb.pp("attention");
        let device = vb.device().clone();
        let q_pos_embed = buffer_or(&attn, "q_pos_embed", (nq, h), || query_pos_embed(nq, h, &device))?;
        let num_patches = cfg.grid_size * cfg.grid_size + 1;
        let k_pos_embed = buffer_or(&attn, "k_pos_embed", (num_patches, h), || {
            patch_pos_embed(cfg.grid_size, h, &device)
        })?;
        let out = vb.pp("output");
        let mlp = out.pp("mlp");
        Ok(Self {
            norm1: LayerNorm::load(h, TORCH_LAYER_NORM_EPS, vb.pp("norm1"))?,
            normk: LayerNorm::load(h, TORCH_LAYER_NORM_EPS, vb.pp("normk"))?,
            query: Linear::load(h, h, true, attn.pp("query"))?,
            key: Linear::load(enc, h, true, attn.pp("key"))?,
            value: Linear::load(enc, h, true, attn.pp("value"))?,
            qk_pos_embed: Tensor::cat(&[&q_pos_embed, &k_pos_embed], 0)?,
            q_pos_embed,
            out_proj: Linear::load(h, h, true, out.pp("out_proj"))?,
            norm2: LayerNorm::load(h, TORCH_LAYER_NORM_EPS, out.pp("norm2"))?,
            w1: Linear::load(h, i, true, mlp.pp("w1"))?,
            w2: Linear::load(i, h, true, mlp.pp("w2"))?,
            w3: Linear::load(h, i, true, mlp.pp("w3"))?,
            ffn_ln: LayerNorm::load(i, cfg.layer_norm_eps, mlp.pp("ffn_ln"))?,
            num_heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, queries: &Tensor, patches: &Tensor) -> Result<Tensor> {
        let queries = self.norm1.forward(queries)?;
        let kv_input = Tensor::cat(&[&queries, &self.normk.forward(patches)?], 1)?;
        let q = self.query.forward(&queries.broadcast_add(&self.q_pos_embed)?)?;
        let k = self.key.forward(&kv_input.broadcast_add(&self.qk_pos_embed)?)?;
        let v = self.value.forward(&kv_input)?;
        let heads = |x: &Tensor| split_heads(x, self.num_heads);
        let context = merge_heads(&attention(&heads(&q)?, &heads(&k)?, &heads(&v)?, None)?)?;
        let x = (queries + self.out_proj.forward(&context)?)?;
        let y = self.norm2.forward(&x)?;
        let gated = (candle_nn::ops::silu(&self.w1.forward(&y)?)? * self.w3.forward(&y)?)?;
        let mlp = self.w2.forward(&self.ffn_ln.forward(&gated)?)?;
        x + mlp
    }
}

/// What the abstractor produces for a batch of images.
#[derive(Debug, Clone)]
pub(crate) struct AbstractorOutput {
    /// Query states after the last layer, before `visual_fc`: `[b, queries, hidden]`.
    pub(crate) encoder_output: Tensor,
    /// `[visual_fc(queries); vit_eos]`: `[b, queries + 1, llm_hidden]`, spliced into the prompt.
    pub(crate) tokens: Tensor,
}

/// The visual abstractor, patch tokens → 65 language-model tokens per image.
#[derive(Debug, Clone)]
pub(crate) struct Abstractor {
    query_embeds: Tensor,
    layers: Vec<CrossAttentionLayer>,
    visual_fc: Linear,
    vit_eos: Tensor,
}

impl Abstractor {
    pub(crate) fn load(cfg: &AbstractorConfig, llm_hidden: usize, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| CrossAttentionLayer::load(cfg, vb.pp(format!("encoder.layers.{i}.crossattention"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            query_embeds: vb.get((1, cfg.num_learnable_queries, cfg.hidden_size), "query_embeds")?,
            layers,
            visual_fc: Linear::load(cfg.hidden_size, llm_hidden, true, vb.pp("visual_fc"))?,
            vit_eos: vb.get((1, 1, llm_hidden), "vit_eos")?,
        })
    }

    pub(crate) fn forward(&self, patches: &Tensor) -> Result<AbstractorOutput> {
        let b = patches.dim(0)?;
        let (_, nq, h) = self.query_embeds.dims3()?;
        let mut queries = self.query_embeds.broadcast_as((b, nq, h))?.contiguous()?;
        for layer in &self.layers {
            queries = layer.forward(&queries, patches)?;
        }
        let projected = self.visual_fc.forward(&queries)?;
        let llm_hidden = projected.dim(2)?;
        let eos = self
            .vit_eos
            .to_dtype(projected.dtype())?
            .broadcast_as((b, 1, llm_hidden))?;
        let tokens = Tensor::cat(&[&projected, &eos.contiguous()?], 1)?;
        Ok(AbstractorOutput {
            encoder_output: queries,
            tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sincos_layout_is_sin_then_cos_with_cls_row_zero() {
        let pe: Vec<Vec<f32>> = patch_pos_embed(2, 8, &Device::Cpu).unwrap().to_vec2().unwrap();
        assert_eq!(pe.len(), 5);
        assert!(pe[0].iter().all(|&x| x == 0.0));
        // Patch 1 is column 1, row 0: first half encodes 1, second half encodes 0.
        assert!((pe[2][0] - 1f32.sin()).abs() < 1e-7 && (pe[2][2] - 1f32.cos()).abs() < 1e-7);
        assert_eq!(&pe[2][4..], &[0.0, 0.0, 1.0, 1.0]);
    }
}
