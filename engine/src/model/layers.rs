//! Small building blocks shared by the three towers: a linear layer, a two-pass layer norm and
//! scaled dot-product attention.
//!
//! candle-nn's fused CPU layer norm computes the variance as E[x²] − E[x]², which loses digits
//! on CLIP's large-magnitude residual stream; the reference (torch) subtracts the mean first, and
//! so does [`LayerNorm`] here.
//!
//! On a GPU in half precision the layers take candle's fused kernels instead (see
//! [`fused_half`]): there the rounding of every activation to bf16 outweighs those digits, and
//! the unfused forms took more than half of the vision tower's time. On an H100 in bf16 the
//! two-pass norm of `[4, 1025, 1024]` took 0.52 ms against 0.04 ms fused, and the tower for 4
//! images went from 91 ms to 42 ms with the three changes here (`scripts/gpu_check.sh`).

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::{cpu_ops, q8_blocks};

/// Whether `x` takes the fused GPU path: half precision on a CUDA device. candle's CUDA kernels
/// for layer norm and softmax accumulate in f32 and round once to the half dtype.
fn fused_half(x: &Tensor) -> bool {
    x.device().is_cuda() && matches!(x.dtype(), DType::BF16 | DType::F16)
}

/// `y = x Wᵀ + b`, with the leading dimensions flattened into one matrix product.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight: Weight,
    bias: Option<Tensor>,
    out_dim: usize,
}

/// A linear layer's weight matrix `[out, in]`.
#[derive(Debug, Clone)]
enum Weight {
    Dense(Tensor),
    /// GGML `Q8_0` blocks along the input dimension ([`super::precision`]).
    Q8(QMatMul),
}

impl Linear {
    pub(crate) fn load(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias { Some(vb.get(out_dim, "bias")?) } else { None };
        Ok(Self {
            weight: Weight::Dense(weight),
            bias,
            out_dim,
        })
    }

    /// Loads the layer with its weight in `Q8_0` blocks. The f32 weight is read, quantized and
    /// dropped tensor by tensor, so the whole model is never held in f32. A layer whose input
    /// is not a whole number of blocks (none in LLaMA or the golden checkpoint) stays dense.
    pub(crate) fn load_q8(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let dense = Self::load(in_dim, out_dim, bias, vb)?;
        match &dense.weight {
            Weight::Dense(w) if in_dim.is_multiple_of(GgmlDType::Q8_0.block_size()) => Ok(Self {
                weight: Weight::Q8(q8_blocks::q8_matmul(w)?),
                ..dense
            }),
            _ => Ok(dense),
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim;
        let x = x.reshape((rows, in_dim))?;
        let y = match &self.weight {
            Weight::Q8(blocks) => blocks.forward(&x.contiguous()?)?,
            Weight::Dense(w) if x.device().is_cpu() && cpu_ops::turn_product_around(rows) => {
                w.matmul(&x.t()?)?.t()?.contiguous()?
            }
            Weight::Dense(w) => x.matmul(&w.t()?)?,
        };
        let y = match &self.bias {
            // candle's CUDA broadcast add works out each element's index with 64-bit divisions:
            // 0.24 ms for the vision tower's `[4100, 3072]` on an H100, where a column of ones
            // times the bias (exact: one product per element) and a plain add take a fifth.
            Some(b) if y.device().is_cuda() => {
                let ones = Tensor::ones((rows, 1), y.dtype(), y.device())?;
                (&y + ones.matmul(&b.reshape((1, b.elem_count()))?)?)?
            }
            Some(b) if cpu_ops::is_cpu_f32(&y) && b.dtype() == DType::F32 => {
                cpu_ops::add_bias_in_place(&y, b)?;
                y
            }
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims.to_vec();
        out_dims[dims.len() - 1] = self.out_dim;
        y.reshape(out_dims)
    }
}

/// LayerNorm over the last dimension, computed in f32 with the mean removed before squaring.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if fused_half(x) {
            return candle_nn::ops::layer_norm(&x.contiguous()?, &self.weight, &self.bias, self.eps as f32);
        }
        if cpu_ops::is_cpu_f32(x) && self.weight.dtype() == DType::F32 && self.bias.dtype() == DType::F32 {
            return cpu_ops::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?.to_dtype(dtype)?;
        normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)
    }
}

/// Attention scores per chunk on the CPU: about one head of the vision tower (`1025²` f32
/// is 4.2 MB). The whole `[4, 16, 1025, 1025]` tensor is 269 MB, written, read by the softmax
/// and read again by the product with `v`; one head at a time stays in the cache and is one
/// small allocation that the allocator reuses, where the whole was mapped fresh and faulted in
/// page by page. On the mid-size bench (`scripts/bench_model.sh`) one head took the tower from
/// 2.2 s to 1.7 s; two or three heads a chunk were 3 to 12% slower than one.
const CPU_SCORES_CHUNK_BYTES: usize = 4 << 20;

/// Score tensors up to this size are worked out whole on the CPU: the allocator reuses
/// allocations this size, so chunks would only add products. The abstractor's
/// (`[4, 16, 65, 1090]`, 18 MB at full size) and a group prompt's (`[1, 32, 349, 349]`, 16 MB)
/// stay whole.
const CPU_WHOLE_SCORES_MAX_BYTES: usize = 32 << 20;

/// Softmax(q kᵀ / √d) v over `[batch, heads, seq, head_dim]` tensors, with an optional additive
/// mask `[seq, keys]` broadcast over batch and heads. Scores and softmax are in f32, as the
/// reference upcasts; on the fused GPU path ([`fused_half`]) the half scores go to the softmax
/// kernel as they are, since it reads them into f32 and rounds once: the numbers of a
/// cast-softmax-cast, without its two extra passes over the largest tensor. On the CPU, large
/// score tensors are worked out a few heads at a time ([`CPU_SCORES_CHUNK_BYTES`]).
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let bytes_per_head = t * k.dim(2)? * DType::F32.size_in_bytes();
    if !q.device().is_cpu() || b * h * bytes_per_head <= CPU_WHOLE_SCORES_MAX_BYTES {
        return attention_whole(q, k, v, mask);
    }
    let heads_per_chunk = (CPU_SCORES_CHUNK_BYTES / bytes_per_head.max(1)).max(1);
    let flat = |x: &Tensor| -> Result<Tensor> {
        let (_, _, rows, width) = x.dims4()?;
        x.contiguous()?.reshape((b * h, rows, width))
    };
    let (q, k, v) = (flat(q)?, flat(k)?, flat(v)?);
    let parts = (0..b * h)
        .step_by(heads_per_chunk)
        .map(|first| {
            let n = heads_per_chunk.min(b * h - first);
            attention_whole(
                &q.narrow(0, first, n)?,
                &k.narrow(0, first, n)?,
                &v.narrow(0, first, n)?,
                mask,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)?.reshape((b, h, t, d))
}

/// [`attention`] over whole tensors: `[.., seq, head_dim]` with any leading dimensions.
fn attention_whole(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let dtype = q.dtype();
    // Scaling q rather than the scores saves a pass over the largest tensor; candle's
    // elementwise ops are single-threaded on the CPU. kᵀ stays a strided view: gemm reads it.
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    let q = (q.contiguous()? * scale)?;
    let scores = q.matmul(&k.contiguous()?.t()?)?;
    let softmax_dtype = if fused_half(&scores) { dtype } else { DType::F32 };
    let scores = scores.to_dtype(softmax_dtype)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(&m.to_dtype(softmax_dtype)?)?,
        None => scores,
    };
    let probs = super::softmax::softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(&v.contiguous()?)
}

/// `[batch, seq, heads·head_dim]` → `[batch, heads, seq, head_dim]`.
pub(crate) fn split_heads(x: &Tensor, num_heads: usize) -> Result<Tensor> {
    let (b, t, h) = x.dims3()?;
    x.reshape((b, t, num_heads, h / num_heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// `[batch, heads, seq, head_dim]` → `[batch, seq, heads·head_dim]`.
pub(crate) fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, t, h * d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Largest absolute difference, in f64.
    fn largest_gap(a: &Tensor, b: &Tensor) -> f64 {
        let diff = (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap()).unwrap();
        diff.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
    }

    #[test]
    fn linear_turned_around_gives_the_usual_product() {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 1.0, (96, 40), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 96, &dev).unwrap();
        let linear = Linear {
            weight: Weight::Dense(weight.clone()),
            bias: Some(bias.clone()),
            out_dim: 96,
        };
        for rows in [1, 5, 64, 300] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, 40), &dev).unwrap();
            let got = linear.forward(&x).unwrap();
            assert_eq!(got.dims(), &[1, rows, 96]);
            let want = x
                .to_dtype(DType::F64)
                .unwrap()
                .broadcast_matmul(&weight.to_dtype(DType::F64).unwrap().t().unwrap())
                .unwrap()
                .broadcast_add(&bias.to_dtype(DType::F64).unwrap())
                .unwrap();
            let gap = largest_gap(&got, &want);
            assert!(gap < 1e-4, "{rows} rows: largest gap {gap}");
        }
    }

    /// A weight and bias as a checkpoint would hold them.
    fn checkpoint_of(weight: &Tensor, bias: &Tensor) -> VarBuilder<'static> {
        let tensors = std::collections::HashMap::from([
            ("weight".to_string(), weight.clone()),
            ("bias".to_string(), bias.clone()),
        ]);
        VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu)
    }

    /// `Q8_0` weights give the dense product to within 1% of its largest value, at every row
    /// count (one row is a decoding step, hundreds a prompt). Measured: 0.27-0.39%.
    #[test]
    fn q8_linear_is_close_to_the_dense_one() {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 0.05, (192, 96), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 192, &dev).unwrap();
        let dense = Linear::load(96, 192, true, checkpoint_of(&weight, &bias)).unwrap();
        let q8 = Linear::load_q8(96, 192, true, checkpoint_of(&weight, &bias)).unwrap();
        assert!(matches!(q8.weight, Weight::Q8(_)), "96 inputs are three whole blocks");
        for rows in [1, 5, 300] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, 96), &dev).unwrap();
            let (want, got) = (dense.forward(&x).unwrap(), q8.forward(&x).unwrap());
            assert_eq!(got.dims(), &[1, rows, 192]);
            let scale = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap() as f64;
            let gap = largest_gap(&got, &want);
            assert!(
                gap > 0.0 && gap < 0.01 * scale,
                "{rows} rows: largest gap {gap} of {scale}"
            );
        }
        // 40 inputs are not whole 32-weight blocks: that layer stays dense and exact.
        let odd = Tensor::randn(0f32, 0.05, (8, 40), &dev).unwrap();
        let odd_bias = Tensor::zeros(8, DType::F32, &dev).unwrap();
        let kept = Linear::load_q8(40, 8, true, checkpoint_of(&odd, &odd_bias)).unwrap();
        assert!(matches!(kept.weight, Weight::Dense(_)));
    }

    #[test]
    fn attention_by_chunks_equals_attention_whole() {
        // Ten heads of 1024² f32 scores: 40 MiB in all, so the CPU path takes them one at a time.
        let dev = Device::Cpu;
        let (q, k, v) = (
            Tensor::randn(0f32, 1.0, (1, 10, 1024, 16), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (1, 10, 1024, 16), &dev).unwrap(),
            Tensor::randn(0f32, 1.0, (1, 10, 1024, 16), &dev).unwrap(),
        );
        let mask: Vec<f32> = (0..1024 * 1024)
            .map(|i| if i % 1024 > i / 1024 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask, (1024, 1024), &dev).unwrap();
        let chunked = attention(&q, &k, &v, Some(&mask)).unwrap();
        let whole = attention_whole(&q, &k, &v, Some(&mask)).unwrap();
        assert_eq!(chunked.dims(), &[1, 10, 1024, 16]);
        let gap = largest_gap(&chunked, &whole);
        assert!(gap < 1e-6, "largest gap {gap}");
    }
}
