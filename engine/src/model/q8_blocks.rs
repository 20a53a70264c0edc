//! `Q8_0` weights held once on the CPU.
//!
//! On x86 CPUs with VNNI and on ARM CPUs with dot products (every Apple one), candle's first
//! product with a `Q8_0` tensor rearranges its blocks into tiles for the integer dot products
//! and keeps them beside the plain blocks, which its tiled kernels never read again: two copies
//! of every weight, 18.6 GB for Co-Instruct where one takes 10.6. Here the blocks live in a
//! storage of ours ([`ReleasableBlocks`]): at load, one product makes candle build the tiles,
//! and if it read the blocks to do so (it reads them through [`QuantizedType::as_ptr`] for
//! nothing else) the plain blocks are dropped. Where no tiles are built (an x86 CPU without
//! VNNI, or `MISTRALRS_FORCE_AVX2=1`, candle's switch; an ARM CPU without dot products) the
//! blocks stay and take the plain kernels.
//!
//! Whether candle 0.11 tiles a `Q8_0` tensor depends on the CPU and the tensor's shape, not on
//! the rows of a product (on x86 every row count takes the tiles; on ARM a single row takes the
//! tiles as a vector product and more rows take them four at a time, the rest one by one), so a
//! released tensor takes the tiled kernels for every product after. Should a later candle reach
//! for the plain blocks all the same, the product fails with an error that says so (or panics,
//! where candle's trait has no room for an error) rather than read freed memory. The ARM path is tested here under
//! emulation only (qemu-aarch64, whose CPU has dot products; see the note in the README).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use candle_core::quantized::k_quants::BlockQ8_0;
use candle_core::quantized::{GgmlDType, GgmlType, QMatMul, QStorage, QTensor, QuantizedType};
use candle_core::{CpuStorage, DType, Error, Module, Result, Storage, Tensor};
use half::f16;

/// `weight` (`[out, in]`, `in` a whole number of 32-weight blocks) in `Q8_0` blocks, held once:
/// the plain blocks are dropped once candle has tiled them.
pub(crate) fn q8_matmul(weight: &Tensor) -> Result<QMatMul> {
    Ok(load(weight)?.0)
}

/// [`q8_matmul`], with the storage it made, to be asked whether its blocks were dropped.
fn load(weight: &Tensor) -> Result<(QMatMul, Arc<ReleasableBlocks>)> {
    let (out_dim, in_dim) = weight.dims2()?;
    let mut blocks = vec![BlockQ8_0::zeros(); out_dim * in_dim / BlockQ8_0::BLCK_SIZE];
    {
        // Quantized from the f32 tensor's own storage: a weight in f32 is held once at a time.
        let weight = weight.to_dtype(DType::F32)?.contiguous()?;
        let (storage, layout) = weight.storage_and_layout();
        let Storage::Cpu(cpu) = &*storage else {
            return Err(Error::Msg("8-bit weights are for the CPU".into()));
        };
        let start = layout.start_offset();
        BlockQ8_0::from_float(&cpu.as_slice::<f32>()?[start..start + out_dim * in_dim], &mut blocks);
    }
    let storage = Arc::new(ReleasableBlocks::new(blocks));
    let tensor = QTensor::new(QStorage::Cpu(Box::new(Shared(Arc::clone(&storage)))), (out_dim, in_dim))?;
    let matmul = QMatMul::from_qtensor(tensor)?;
    // One row is enough: candle tiles the whole tensor on its first product, if at all.
    matmul.forward(&Tensor::zeros((1, in_dim), DType::F32, weight.device())?)?;
    if storage.read_for_tiles.load(Ordering::Acquire) {
        storage.release();
    }
    Ok((matmul, storage))
}

/// A tensor's `Q8_0` blocks, which can be dropped once candle holds them as tiles.
pub(crate) struct ReleasableBlocks {
    blocks: RwLock<Option<Vec<BlockQ8_0>>>,
    /// The blocks' size, which stays what candle is told after they are dropped.
    bytes: usize,
    /// Set when candle took the blocks' address: to build its tiles.
    read_for_tiles: AtomicBool,
}

impl ReleasableBlocks {
    fn new(blocks: Vec<BlockQ8_0>) -> Self {
        Self {
            bytes: std::mem::size_of_val(blocks.as_slice()),
            blocks: RwLock::new(Some(blocks)),
            read_for_tiles: AtomicBool::new(false),
        }
    }

    fn release(&self) {
        *self.blocks.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether the plain blocks have been dropped.
    #[cfg(test)]
    fn is_released(&self) -> bool {
        self.blocks.read().unwrap_or_else(|e| e.into_inner()).is_none()
    }

    /// `f` on the plain blocks, or an error once they are dropped.
    fn with_blocks<T>(&self, f: impl FnOnce(&Vec<BlockQ8_0>) -> Result<T>) -> Result<T> {
        match self.blocks.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(blocks) => f(blocks),
            None => Err(Error::Msg(RELEASED.into())),
        }
    }
}

const RELEASED: &str = "the plain Q8_0 blocks were dropped once candle had tiled them, \
     and candle asked for them again (see engine/src/model/q8_blocks.rs)";

/// The storage candle holds; [`q8_matmul`] keeps the other handle, to drop the blocks.
struct Shared(Arc<ReleasableBlocks>);

impl QuantizedType for Shared {
    fn dtype(&self) -> GgmlDType {
        GgmlDType::Q8_0
    }

    fn matmul_t(&self, mkn: (usize, usize, usize), lhs: &[f32], dst: &mut [f32]) -> Result<()> {
        self.0.with_blocks(|blocks| blocks.matmul_t(mkn, lhs, dst))
    }

    fn matmul_t_f16(&self, mkn: (usize, usize, usize), lhs: &[f16], dst: &mut [f16]) -> Result<()> {
        self.0.with_blocks(|blocks| blocks.matmul_t_f16(mkn, lhs, dst))
    }

    fn embedding(&self, ids: &[u32], rows: usize, hidden: usize) -> Result<CpuStorage> {
        self.0.with_blocks(|blocks| blocks.embedding(ids, rows, hidden))
    }

    fn dequantize(&self, elem_count: usize) -> Result<CpuStorage> {
        self.0.with_blocks(|blocks| blocks.dequantize(elem_count))
    }

    fn storage_size_in_bytes(&self) -> usize {
        self.0.bytes
    }

    fn as_ptr(&self) -> *const u8 {
        let ptr = self
            .0
            .with_blocks(|blocks| Ok(blocks.as_ptr() as *const u8))
            .unwrap_or_else(|_| panic!("{RELEASED}"));
        self.0.read_for_tiles.store(true, Ordering::Release);
        ptr
    }

    fn block_size(&self) -> usize {
        BlockQ8_0::BLCK_SIZE
    }

    fn from_float(&mut self, xs: &[f32]) {
        let mut blocks = self.0.blocks.write().unwrap_or_else(|e| e.into_inner());
        BlockQ8_0::from_float(xs, blocks.as_mut().unwrap_or_else(|| panic!("{RELEASED}")));
    }

    fn from_float_imatrix(&mut self, xs: &[f32], imatrix_weights: &[f32], n_per_row: usize) {
        let mut blocks = self.0.blocks.write().unwrap_or_else(|e| e.into_inner());
        let blocks = blocks.as_mut().unwrap_or_else(|| panic!("{RELEASED}"));
        BlockQ8_0::from_float_imatrix(xs, blocks, imatrix_weights, n_per_row);
    }

    fn size(&self) -> usize {
        self.0.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Whether candle tiles `Q8_0` weights on this CPU (its `repack_x86::select` and
    /// `PackedKind::select`): an x86 CPU with VNNI, unless told to keep to AVX2, or an ARM CPU
    /// with dot products.
    fn candle_tiles_q8() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            (std::arch::is_x86_feature_detected!("avx512vnni") || std::arch::is_x86_feature_detected!("avxvnni"))
                && std::env::var("MISTRALRS_FORCE_AVX2").as_deref() != Ok("1")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("dotprod")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        false
    }

    fn weight(out_dim: usize, in_dim: usize) -> Tensor {
        Tensor::randn(0f32, 0.05, (out_dim, in_dim), &Device::Cpu).unwrap()
    }

    fn max_gap(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// A weight candle tiles (16 outputs a tile, 256 inputs a block of the activations): its
    /// plain blocks are dropped on a CPU with VNNI, and every product after, for any number
    /// of rows (one for a decoding step, many for a prompt), is what candle's own `Q8_0`
    /// tensor gives, and near the f32 product.
    #[test]
    fn a_tiled_weight_is_held_once_and_multiplies_as_candles_own() {
        let w = weight(48, 512);
        let (ours, storage) = load(&w).unwrap();
        assert_eq!(
            storage.is_released(),
            candle_tiles_q8(),
            "blocks dropped where candle tiles them"
        );
        if !candle_tiles_q8() {
            eprintln!("candle builds no tiles on this CPU (no VNNI or dot products): the blocks stay");
        }
        let candles = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        for rows in [1, 3, 17, 40] {
            let x = Tensor::randn(0f32, 1.0, (rows, 512), &Device::Cpu).unwrap();
            let got = ours.forward(&x).unwrap();
            assert_eq!(max_gap(&got, &candles.forward(&x).unwrap()), 0.0, "{rows} rows");
            // Outputs of about 1.1; 8-bit weights and activations each leave about 0.01, so a
            // largest gap of 0.08 over the outputs is the rounding, and a wrong product is far off.
            let exact = x.matmul(&w.t().unwrap()).unwrap();
            let gap = max_gap(&got, &exact);
            assert!(gap < 0.08, "{rows} rows: {gap} from the f32 product");
        }
    }

    /// A weight candle tiles nowhere (on x86 its input is not a whole number of 256-wide
    /// activation blocks, on ARM its outputs not a whole number of 4-row tiles) keeps its plain
    /// blocks, which take candle's plain kernels.
    #[test]
    fn a_weight_candle_does_not_tile_keeps_its_blocks() {
        let w = weight(30, 96);
        let (ours, storage) = load(&w).unwrap();
        assert!(!storage.is_released());
        let x = Tensor::randn(0f32, 1.0, (5, 96), &Device::Cpu).unwrap();
        let candles = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        assert_eq!(max_gap(&ours.forward(&x).unwrap(), &candles.forward(&x).unwrap()), 0.0);
    }

    /// Once dropped, the plain blocks are refused with an error that says why, not read.
    #[test]
    fn dropped_blocks_are_refused_not_read() {
        let storage = Shared(Arc::new(ReleasableBlocks::new(vec![BlockQ8_0::zeros(); 4])));
        let mut dst = vec![0f32; 4];
        storage.matmul_t((1, 32, 4), &[0.0; 32], &mut dst).unwrap();
        storage.0.release();
        let err = storage.matmul_t((1, 32, 4), &[0.0; 32], &mut dst).unwrap_err();
        assert!(err.to_string().contains("dropped once candle had tiled them"), "{err}");
        assert!(storage.dequantize(128).is_err());
        assert_eq!(
            storage.storage_size_in_bytes(),
            4 * 34,
            "the size candle was told stays"
        );
    }
}
