//! LLaMA-2 with mPLUG-Owl2's modality-adaptive module, plus a KV cache.
//!
//! Paper: mPLUG-Owl2 (arXiv 2311.04257) §3.2, as fine-tuned in Co-Instruct (arXiv 2402.16641).
//! Reference: Q-Future/Q-Align `q_align/model/modeling_llama2.py` (`MultiwayNetwork`,
//! `LlamaAttention`, `LlamaDecoderLayer`) on transformers 4.36's LLaMA.
//! Checkpoint: `q-future/co-instruct`, tensors under `model.` and `lm_head.`.
//!
//! Every token carries a modality (0 = text, 1 = image). The two RMS norms of each layer and
//! its key and value projections exist twice (`multiway.0` / `multiway.1`), and each token goes
//! through the copy of its modality; queries, the output projection and the MLP are shared.
//! Image tokens come in runs of 65, so each copy is applied to contiguous runs of the sequence.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::Config;
use super::layers::{attention, merge_heads, split_heads, Linear};

/// Token modality: selects `multiway.0` (text) or `multiway.1` (image).
pub(crate) type Modality = u8;

/// Maximal runs `(start, len, modality)` of equal modality.
fn runs(modalities: &[Modality]) -> Vec<(usize, usize, Modality)> {
    let mut out: Vec<(usize, usize, Modality)> = Vec::new();
    for (i, &m) in modalities.iter().enumerate() {
        match out.last_mut() {
            Some((_, len, last)) if *last == m => *len += 1,
            _ => out.push((i, 1, m)),
        }
    }
    out
}

/// Applies `f(way, rows)` to the tokens of each modality and puts the rows back in order.
///
/// `f` works row by row (a norm or a projection), so it may take all the rows of one modality
/// at once: one product per weight instead of one per run. A group-of-4 prompt has 9 runs, and
/// each product packs its whole weight matrix; per run, the packing outweighed the arithmetic of
/// the small products it served. Per modality, the mid-size bench's prefill went from 1.04 s to
/// 0.68 s (timed under `perf`, before the short products were turned around in [`Linear`]).
fn per_modality(
    x: &Tensor,
    runs: &[(usize, usize, Modality)],
    f: impl Fn(usize, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    if let [(_, _, m)] = runs {
        return f(usize::from(*m), x);
    }
    let mut outputs: [Option<Tensor>; 2] = [None, None];
    for (way, output) in outputs.iter_mut().enumerate() {
        let rows = runs
            .iter()
            .filter(|&&(_, _, m)| usize::from(m) == way)
            .map(|&(start, len, _)| x.narrow(1, start, len))
            .collect::<Result<Vec<_>>>()?;
        if !rows.is_empty() {
            *output = Some(f(way, &Tensor::cat(&rows, 1)?)?);
        }
    }
    let mut taken = [0usize; 2];
    let parts = runs
        .iter()
        .map(|&(_, len, m)| {
            let way = usize::from(m);
            let Some(output) = outputs.get(way).and_then(Option::as_ref) else {
                candle_core::bail!("token modality {m} is neither text (0) nor image (1)")
            };
            let part = output.narrow(1, taken[way], len);
            taken[way] += len;
            part
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// Loads `multiway.0` and `multiway.1` of one module.
fn multiway<T>(vb: &VarBuilder, load: impl Fn(VarBuilder) -> Result<T>) -> Result<[T; 2]> {
    Ok([load(vb.pp("multiway.0"))?, load(vb.pp("multiway.1"))?])
}

#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps: eps as f32,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

/// Keys and values of every layer for the positions seen so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// Positions already in the cache: the position id of the next token.
    pub(crate) fn len(&self) -> usize {
        match self.layers.first() {
            Some(Some((k, _))) => k.dim(2).unwrap_or(0),
            _ => 0,
        }
    }

    fn append(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        if self.layers.len() <= layer {
            self.layers.resize(layer + 1, None);
        }
        let kv = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.layers[layer] = Some(kv.clone());
        Ok(kv)
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    input_layernorm: [RmsNorm; 2],
    q_proj: Linear,
    k_proj: [Linear; 2],
    v_proj: [Linear; 2],
    o_proj: Linear,
    post_attention_layernorm: [RmsNorm; 2],
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
}

impl DecoderLayer {
    /// Loads one layer; `quantize` stores its linear layers in 8-bit blocks ([`Linear::load_q8`]).
    fn load(cfg: &Config, vb: VarBuilder, quantize: bool) -> Result<Self> {
        let (h, i, eps, bias) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.rms_norm_eps,
            cfg.attention_bias,
        );
        let kv_dim = cfg.num_kv_heads() * (h / cfg.num_attention_heads);
        let attn = vb.pp("self_attn");
        let norm = |name: &str| multiway(&vb.pp(name), |vb| RmsNorm::load(h, eps, vb));
        let linear: fn(usize, usize, bool, VarBuilder) -> Result<Linear> =
            if quantize { Linear::load_q8 } else { Linear::load };
        Ok(Self {
            input_layernorm: norm("input_layernorm")?,
            q_proj: linear(h, h, bias, attn.pp("q_proj"))?,
            k_proj: multiway(&attn.pp("k_proj"), |vb| linear(h, kv_dim, bias, vb))?,
            v_proj: multiway(&attn.pp("v_proj"), |vb| linear(h, kv_dim, bias, vb))?,
            o_proj: linear(h, h, bias, attn.pp("o_proj"))?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            gate_proj: linear(h, i, false, vb.pp("mlp.gate_proj"))?,
            up_proj: linear(h, i, false, vb.pp("mlp.up_proj"))?,
            down_proj: linear(i, h, false, vb.pp("mlp.down_proj"))?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_kv_heads(),
        })
    }

    fn forward(&self, x: &Tensor, step: &Step, cache: &mut KvCache, index: usize) -> Result<Tensor> {
        let normed = per_modality(x, &step.runs, |m, x| self.input_layernorm[m].forward(x))?;
        let q = split_heads(&self.q_proj.forward(&normed)?, self.num_heads)?;
        let k = split_heads(
            &per_modality(&normed, &step.runs, |m, x| self.k_proj[m].forward(x))?,
            self.num_kv_heads,
        )?;
        let v = split_heads(
            &per_modality(&normed, &step.runs, |m, x| self.v_proj[m].forward(x))?,
            self.num_kv_heads,
        )?;
        let q = candle_nn::rotary_emb::rope(&q, &step.cos, &step.sin)?;
        let k = candle_nn::rotary_emb::rope(&k, &step.cos, &step.sin)?;
        let (k, v) = cache.append(index, k, v)?;
        let groups = self.num_heads / self.num_kv_heads;
        let (k, v) = (repeat_kv(&k, groups)?, repeat_kv(&v, groups)?);
        let context = attention(&q, &k, &v, step.mask.as_ref())?;
        let x = (x + self.o_proj.forward(&merge_heads(&context)?)?)?;
        let normed = per_modality(&x, &step.runs, |m, x| self.post_attention_layernorm[m].forward(x))?;
        let gated = (candle_nn::ops::silu(&self.gate_proj.forward(&normed)?)? * self.up_proj.forward(&normed)?)?;
        x + self.down_proj.forward(&gated)?
    }
}

/// Repeats each key/value head `groups` times for grouped-query attention.
fn repeat_kv(x: &Tensor, groups: usize) -> Result<Tensor> {
    if groups == 1 {
        return Ok(x.clone());
    }
    let (b, h, t, d) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, h, groups, t, d))?
        .reshape((b, h * groups, t, d))
}

/// What one forward call shares across layers: modality runs, RoPE tables and the causal mask.
struct Step {
    runs: Vec<(usize, usize, Modality)>,
    cos: Tensor,
    sin: Tensor,
    mask: Option<Tensor>,
}

/// The language model's outputs for the new positions of one forward call.
#[derive(Debug, Clone)]
pub(crate) struct LlmOutput {
    /// Output of each decoder layer, only when asked for (golden tests).
    pub(crate) layer_outputs: Vec<Tensor>,
    /// After the final norm: `[b, new, hidden]`.
    pub(crate) hidden: Tensor,
}

/// LLaMA-2 with the modality-adaptive module.
#[derive(Debug, Clone)]
pub(crate) struct LanguageModel {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    /// RoPE tables `[max_positions, head_dim / 2]`.
    cos: Tensor,
    sin: Tensor,
}

/// At most this many decoder layers load at once on the CPU. In q8 each one in flight holds a
/// weight matrix in f32 while it is quantized (180 MB at LLaMA-2-7B's MLP), memory that `auto`'s
/// room beside the weights ([`super::precision`]) has to cover.
const MAX_LOADING_LAYERS: usize = 8;

/// Loads the decoder layers, several at a time on the CPU. There loading is the conversion to
/// f32 and, in q8, the quantization, each done on one thread per tensor by candle, and the
/// layers are independent. On a GPU they load one after the other, as the copies to the device
/// did before (concurrent uploads are not tested without a GPU here).
fn load_layers(cfg: &Config, model: &VarBuilder, quantize: bool) -> Result<Vec<DecoderLayer>> {
    let load = &|i: usize| DecoderLayer::load(cfg, model.pp(format!("layers.{i}")), quantize);
    let n = cfg.num_hidden_layers;
    let workers = match model.device() {
        Device::Cpu => std::thread::available_parallelism()
            .map_or(1, |cores| cores.get())
            .min(MAX_LOADING_LAYERS)
            .min(n),
        _ => 1,
    };
    if workers <= 1 {
        return (0..n).map(load).collect();
    }
    // Worker `w` takes layers w, w + workers, ...: the layers are the same size.
    let mut loaded: Vec<(usize, Result<DecoderLayer>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| scope.spawn(move || (w..n).step_by(workers).map(|i| (i, load(i))).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a layer-loading thread panicked"))
            .collect()
    });
    loaded.sort_by_key(|(i, _)| *i);
    loaded.into_iter().map(|(_, layer)| layer).collect()
}

impl LanguageModel {
    /// Loads the language model; `quantize` stores the decoder layers' linear layers in 8-bit
    /// blocks. `lm_head` stays dense: it reads the answer's logits, and a call projects only the
    /// last position through it.
    pub(crate) fn load(cfg: &Config, vb: VarBuilder, quantize: bool) -> Result<Self> {
        let model = vb.pp("model");
        let layers = load_layers(cfg, &model, quantize)?;
        let embed_tokens = model.get((cfg.vocab_size, cfg.hidden_size), "embed_tokens.weight")?;
        let lm_head = if cfg.tie_word_embeddings && !vb.contains_tensor("lm_head.weight") {
            Linear::load(cfg.hidden_size, cfg.vocab_size, false, model.pp("embed_tokens"))?
        } else {
            Linear::load(cfg.hidden_size, cfg.vocab_size, false, vb.pp("lm_head"))?
        };
        let head_dim = cfg.hidden_size / cfg.num_attention_heads;
        let (cos, sin) = rope_tables(head_dim, cfg.max_position_embeddings, cfg.rope_theta, vb.device())?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::load(cfg.hidden_size, cfg.rms_norm_eps, model.pp("norm"))?,
            lm_head,
            cos: cos.to_dtype(vb.dtype())?,
            sin: sin.to_dtype(vb.dtype())?,
        })
    }

    /// Rows of `embed_tokens` for `ids`: `[1, ids.len(), hidden]`.
    pub(crate) fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        let ids = Tensor::new(ids, self.embed_tokens.device())?;
        self.embed_tokens.index_select(&ids, 0)?.unsqueeze(0)
    }

    /// Runs the new positions `embeds` (`[1, new, hidden]`) after what `cache` holds, and
    /// appends their keys and values to it. Position ids continue from the cache length.
    pub(crate) fn forward(
        &self,
        embeds: &Tensor,
        modalities: &[Modality],
        cache: &mut KvCache,
        keep_layer_outputs: bool,
    ) -> Result<LlmOutput> {
        let new = embeds.dim(1)?;
        if modalities.len() != new {
            candle_core::bail!("{} modality indicators for {new} positions", modalities.len());
        }
        let offset = cache.len();
        if offset + new > self.cos.dim(0)? {
            candle_core::bail!(
                "{} positions exceed max_position_embeddings {}",
                offset + new,
                self.cos.dim(0)?
            );
        }
        let step = Step {
            runs: runs(modalities),
            cos: self.cos.narrow(0, offset, new)?,
            sin: self.sin.narrow(0, offset, new)?,
            mask: (new > 1)
                .then(|| causal_mask(new, offset, embeds.device()))
                .transpose()?,
        };
        let mut x = embeds.clone();
        let mut layer_outputs = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x, &step, cache, i)?;
            if keep_layer_outputs {
                layer_outputs.push(x.clone());
            }
        }
        Ok(LlmOutput {
            layer_outputs,
            hidden: self.norm.forward(&x)?,
        })
    }

    /// `lm_head` over hidden states, in f32.
    pub(crate) fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(DType::F32)
    }

    /// Logits of the last position only: `[vocab]`. Saves the full vocabulary projection of
    /// every prompt position when only the next token matters.
    pub(crate) fn last_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
        self.logits(&last)?.flatten_all()
    }
}

/// `cos`/`sin` of `position · θ^(−2i/d)`, `[max_positions, head_dim / 2]`, computed in f32 as
/// transformers' `LlamaRotaryEmbedding` does (non-interleaved halves, `rotate_half`).
fn rope_tables(head_dim: usize, max_positions: usize, theta: f64, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv_freq: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
    let positions = Tensor::arange(0u32, max_positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max_positions, 1))?;
    let freqs = positions.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// Additive mask `[new, offset + new]`: new position `i` sees every key up to `offset + i`.
fn causal_mask(new: usize, offset: usize, device: &Device) -> Result<Tensor> {
    let total = offset + new;
    let mask: Vec<f32> = (0..new)
        .flat_map(|i| (0..total).map(move |j| if j > offset + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (new, total), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_on_modality_changes() {
        assert_eq!(runs(&[0, 0, 1, 1, 1, 0]), vec![(0, 2, 0), (2, 3, 1), (5, 1, 0)]);
        assert_eq!(runs(&[1]), vec![(0, 1, 1)]);
    }

    #[test]
    fn causal_mask_with_offset_lets_each_row_see_the_cache() {
        let m: Vec<Vec<f32>> = causal_mask(2, 3, &Device::Cpu).unwrap().to_vec2().unwrap();
        assert_eq!(m[0][..4], [0.0; 4]);
        assert_eq!(m[0][4], f32::NEG_INFINITY);
        assert_eq!(m[1], vec![0.0; 5]);
    }
}
