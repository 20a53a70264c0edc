//! CPU f32 kernels that each replace a chain of candle ops in the towers' inner loops: a linear
//! layer's bias add, CLIP's quick GELU and a two-pass layer norm; and the choice of which way
//! round a linear layer's product runs.
//!
//! Every candle op allocates its output. At the vision tower's sizes a tensor is 17 to 67 MB
//! (`[4100, 1024]` to `[4100, 4096]` in f32), and an allocation that large is mapped fresh from
//! the kernel and faulted in page by page on first touch: under `perf`, page faults and the
//! zeroing of fresh pages took a quarter of the mid-size tower's time. The chains allocated one
//! tensor per step (layer norm five: centred, squared, normalised, scaled, shifted; quick GELU
//! three). These kernels write the bias and the activation in place, into a matrix product's
//! fresh output that nothing else holds, and the layer norm once (7.5x faster than the chain on
//! `[4, 1025, 512]`), and they split the rows across rayon's threads where candle's elementwise
//! ops run on one. Together they took the mid-size tower from about 1.7 s to 1.3 s (AVX-512
//! kernels, before short products were turned around). Other devices and dtypes keep candle's
//! ops.

use candle_core::{CpuStorage, CustomOp3, DType, Device, InplaceOp1, InplaceOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Rows per rayon task: enough work per task that splitting costs nothing measurable.
const MIN_ELEMS_PER_TASK: usize = 1 << 14;

/// Whether a linear layer over `rows` rows should compute `(W xᵀ)ᵀ` rather than `x Wᵀ` on the
/// CPU: the same numbers, with the weight's output dimension (1024 and more) along the matrix
/// kernel's tall side. gemm's kernels work out blocks of 16 (AVX2) or 64 (AVX-512) rows at a
/// time, so a product of a few rows (a continuation's 30 tokens, a prompt's 48 text tokens)
/// wastes most of each block. Turned around it took 0.36 ms instead of 1.36 ms at 32 rows
/// (`[32, 1024] x [1024, 1024]`, AVX-512) and 0.50 ms against 0.53 ms with AVX2; from 65 rows
/// on, AVX2's kernels did better the usual way, AVX-512's from 256.
pub(crate) fn turn_product_around(rows: usize) -> bool {
    // The standard library caches what the CPU has; asking again is a load.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return (2..256).contains(&rows);
    }
    (2..65).contains(&rows)
}

/// Whether `x` is on the CPU in f32, where these kernels apply.
pub(crate) fn is_cpu_f32(x: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu) && x.dtype() == DType::F32
}

/// The f32 values `layout` selects from `storage`, which op `op` needs contiguous.
pub(crate) fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} takes f32")
    };
    Ok(&data[contiguous_range(layout, op)?])
}

/// [`contiguous_f32`], to write in place.
fn contiguous_f32_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout, op: &str) -> Result<&'a mut [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op} takes f32")
    };
    Ok(&mut data[contiguous_range(layout, op)?])
}

fn contiguous_range(layout: &Layout, op: &str) -> Result<std::ops::Range<usize>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(start..end),
        None => candle_core::bail!("{op} takes contiguous input"),
    }
}

/// Rows of `width` per rayon task, at least one.
fn rows_per_task(width: usize) -> usize {
    MIN_ELEMS_PER_TASK.div_ceil(width.max(1)).max(1)
}

struct AddBias;

impl InplaceOp2 for AddBias {
    fn name(&self) -> &'static str {
        "qrank-add-bias"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout, bias: &CpuStorage, bias_l: &Layout) -> Result<()> {
        let bias = contiguous_f32(bias, bias_l, self.name())?;
        let y = contiguous_f32_mut(dst, dst_l, self.name())?;
        let width = bias.len();
        if width == 0 || y.len() % width != 0 {
            candle_core::bail!("bias of {width} does not divide an output of {}", y.len())
        }
        y.par_chunks_mut(width * rows_per_task(width)).for_each(|rows| {
            for row in rows.chunks_exact_mut(width) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        });
        Ok(())
    }
}

/// `y += bias` over the last dimension, in place. `y` must be a fresh, contiguous result that no
/// other tensor shares (a matrix product's output), since every view of its storage changes.
pub(crate) fn add_bias_in_place(y: &Tensor, bias: &Tensor) -> Result<()> {
    y.inplace_op2(&bias.contiguous()?, &AddBias)
}

struct QuickGelu;

impl InplaceOp1 for QuickGelu {
    fn name(&self) -> &'static str {
        "qrank-quick-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let x = contiguous_f32_mut(storage, layout, self.name())?;
        x.par_chunks_mut(MIN_ELEMS_PER_TASK).for_each(|part| {
            for v in part {
                *v /= 1.0 + (-1.702 * *v).exp();
            }
        });
        Ok(())
    }
}

/// CLIP's `x · sigmoid(1.702 x)`, in place, with the same ownership rule as [`add_bias_in_place`].
pub(crate) fn quick_gelu_in_place(x: &Tensor) -> Result<()> {
    x.inplace_op1(&QuickGelu)
}

struct LayerNorm {
    eps: f64,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "qrank-layer-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_l: &Layout,
        weight: &CpuStorage,
        weight_l: &Layout,
        bias: &CpuStorage,
        bias_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x_data = contiguous_f32(x, x_l, self.name())?;
        let weight = contiguous_f32(weight, weight_l, self.name())?;
        let bias = contiguous_f32(bias, bias_l, self.name())?;
        let width = weight.len();
        if width == 0 || bias.len() != width || x_l.dims().last() != Some(&width) {
            candle_core::bail!(
                "layer norm of {width} weights and {} biases over a tensor of shape {:?}",
                bias.len(),
                x_l.dims()
            )
        }
        let mut out = vec![0f32; x_data.len()];
        let per_task = width * rows_per_task(width);
        out.par_chunks_mut(per_task)
            .zip(x_data.par_chunks(per_task))
            .for_each(|(out_rows, x_rows)| {
                for (o, row) in out_rows.chunks_exact_mut(width).zip(x_rows.chunks_exact(width)) {
                    self.row(row, weight, bias, o);
                }
            });
        Ok((CpuStorage::F32(out), x_l.shape().clone()))
    }
}

impl LayerNorm {
    /// The mean, then the variance of the centred values: CLIP's residual stream carries values
    /// in the hundreds, where E[x²] − E[x]² in f32 loses the variance. Sums run in 16 lanes, so
    /// they vectorise and no single sum grows long.
    fn row(&self, x: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
        let n = x.len() as f32;
        let mean = lane_sum(x, |v| v) / n;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (var + self.eps as f32).sqrt();
        for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
            *o = (v - mean) * inv * w + b;
        }
    }
}

/// `Σ f(x)` over 16 interleaved partial sums.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    chunks.remainder().iter().map(|&v| f(v)).sum::<f32>() + lanes.iter().sum::<f32>()
}

/// Layer norm over the last dimension of a CPU f32 tensor, into a new tensor.
pub(crate) fn layer_norm(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3_no_bwd(&weight.contiguous()?, &bias.contiguous()?, &LayerNorm { eps })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(data: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_slice(data, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn bias_is_added_to_every_row() {
        let y = cpu(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3))
            .matmul(&Tensor::eye(3, DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        add_bias_in_place(&y, &Tensor::new(&[10f32, 20.0, 30.0], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), [[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]);
    }

    #[test]
    fn bias_of_the_wrong_width_is_refused() {
        let y = cpu(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], (2, 3)).copy().unwrap();
        let err = add_bias_in_place(&y, &Tensor::new(&[1f32, 2.0, 3.0, 4.0], &Device::Cpu).unwrap());
        assert!(err.is_err());
    }

    #[test]
    fn quick_gelu_matches_its_definition() {
        let xs = [-2.0f32, 0.0, 0.5, 3.0, -90.0];
        let x = Tensor::new(&xs, &Device::Cpu).unwrap().copy().unwrap();
        quick_gelu_in_place(&x).unwrap();
        for (xi, yi) in xs.iter().zip(x.to_vec1::<f32>().unwrap()) {
            assert!((yi - xi / (1.0 + (-1.702 * xi).exp())).abs() < 1e-6, "{xi}: {yi}");
        }
    }

    #[test]
    fn layer_norm_matches_the_formula_on_large_offsets() {
        // A row around 500 with a spread of 1: where E[x²] − E[x]² in f32 would lose the variance.
        let row: Vec<f32> = (0..64).map(|i| 500.0 + ((i * 37) % 17) as f32 / 8.0).collect();
        let weight: Vec<f32> = (0..64).map(|i| 0.5 + i as f32 / 64.0).collect();
        let bias: Vec<f32> = (0..64).map(|i| i as f32 / 10.0).collect();
        let x = cpu(&[row.clone(), row.iter().map(|v| -v).collect()].concat(), (2, 64));
        let (w, b) = (
            Tensor::new(weight.as_slice(), &Device::Cpu).unwrap(),
            Tensor::new(bias.as_slice(), &Device::Cpu).unwrap(),
        );
        let got = layer_norm(&x, &w, &b, 1e-6).unwrap().to_vec2::<f32>().unwrap();
        for (sign, got_row) in [1.0f64, -1.0].iter().zip(&got) {
            let vals: Vec<f64> = row.iter().map(|&v| sign * f64::from(v)).collect();
            let mean = vals.iter().sum::<f64>() / 64.0;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 64.0;
            for (i, &g) in got_row.iter().enumerate() {
                let want = (vals[i] - mean) / (var + 1e-6).sqrt() * f64::from(weight[i]) + f64::from(bias[i]);
                assert!((f64::from(g) - want).abs() < 1e-4, "{i}: {g} vs {want}");
            }
        }
    }
}
