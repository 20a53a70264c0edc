//! The numeric precision a checkpoint is loaded in.
//!
//! The real checkpoint has about 8.2 B parameters: 33 GB in f32, 16.5 GB in bf16 or f16. A GPU
//! takes bf16. On a CPU, f32 is the precise path but needs a 40 GB machine, and candle's CPU
//! products in bf16 are slow. [`Precision::Q8`] is for the laptop: the language model's linear
//! layers (7.5 B of the 8.2 B weights, and the bulk of every call's arithmetic) are stored as
//! GGML `Q8_0` blocks (32 weights sharing one f16 scale, 8.5 bits a weight) and multiplied by
//! candle's integer dot products, which quantize each activation row to the same blocks. The
//! vision tower, abstractor, embeddings, norms and `lm_head` stay in f32, so the answer logits
//! are read off an f32 projection.
//!
//! The blocks take 8.0 GB for the real checkpoint, and the rest 2.6 GB in f32: 10.6 GB
//! ([`WeightCounts::bytes_in`]). On x86 CPUs with VNNI and on ARM, candle's CPU kernels
//! rearrange each weight's blocks into tiles for their integer dot products on its first product
//! and keep both copies, 18.6 GB; the model builds the tiles at load and drops the plain blocks
//! (`q8_blocks`), so it holds one copy there too. On the development machine (AVX-512 VNNI) the
//! tiles made a group prompt's prefill 7.4x faster than the plain blocks (1.72 s against 12.8 s
//! for 4 decoder layers at LLaMA-7B width). `auto` picks q8 on a CPU whose memory cannot hold
//! f32 ([`Precision::for_memory`]).
//!
//! Measured on the 2-core development machine, one `[308, 4096] x [4096, 11008]` product (a
//! group-of-4 prompt through an MLP projection): f32 96 ms, `Q8_0` 53 ms; one row (a decoding
//! step) 16 ms against 1.7 ms. `Q4_0` and `Q4K` lose 8x as much accuracy; `Q4_0`'s product with
//! many rows is 6.5x slower than f32 here. Accuracy and whole-call timings:
//! `tests/model_golden.rs` and the README.

use std::fmt;

use candle_core::DType;

use super::device::DeviceKind;
use super::error::ModelError;
use super::loader::{self, Checkpoint};

/// Numeric precision of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Precision {
    /// bf16 on a GPU; on the CPU f32, or q8 where f32 does not fit the memory
    /// ([`Precision::for_memory`], which the caller asks before loading).
    #[default]
    Auto,
    F32,
    Bf16,
    F16,
    /// The language model's linear layers in 8-bit blocks, the rest in f32 (CPU only).
    Q8,
}

const EXPECTED: &str = "expected auto, f32, bf16, f16 or q8";

impl std::str::FromStr for Precision {
    type Err = ModelError;

    fn from_str(name: &str) -> Result<Self, ModelError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" => Ok(Self::F16),
            "q8" | "q8_0" => Ok(Self::Q8),
            _ => Err(ModelError::Precision {
                name: name.to_owned(),
                reason: EXPECTED.to_owned(),
            }),
        }
    }
}

impl TryFrom<String> for Precision {
    type Error = ModelError;

    fn try_from(name: String) -> Result<Self, ModelError> {
        name.parse()
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
            Self::Q8 => "q8",
        })
    }
}

impl Precision {
    /// The precision to load in on `device`: `auto` picked, and `q8` refused on a GPU (candle's
    /// quantized GPU kernels are not checked against the reference here, and a GPU has bf16).
    pub fn on(self, device: DeviceKind) -> Result<Self, ModelError> {
        match (self, device) {
            (Self::Auto, DeviceKind::Cpu) => Ok(Self::F32),
            (Self::Auto, DeviceKind::Cuda(_)) => Ok(Self::Bf16),
            (Self::Q8, DeviceKind::Cuda(_)) => Err(ModelError::Precision {
                name: self.to_string(),
                reason: format!("8-bit weights are for the CPU; on {device} use bf16 (the default there)"),
            }),
            (precision, _) => Ok(precision),
        }
    }

    /// The dtype of the tensors that are not quantized (all of them, but in `q8`).
    pub(crate) fn dtype(self) -> DType {
        match self {
            Self::Auto | Self::F32 | Self::Q8 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    /// Whether the language model's linear layers are stored in 8-bit blocks.
    pub(crate) fn quantizes_language(self) -> bool {
        self == Self::Q8
    }
}

/// How many weights a checkpoint holds: those [`Precision::Q8`] stores in 8-bit blocks (the
/// decoder layers' linear layers) and the rest, which every precision but bf16 and f16 keeps in
/// f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightCounts {
    pub quantized_in_q8: u64,
    pub other: u64,
}

/// Memory left beside the weights when `auto` decides whether f32 fits: activations, the
/// embedding cache (512 MiB by default) and the images a run keeps (`--image-memory-mib`).
pub const ROOM_BESIDE_WEIGHTS: u64 = 3 << 30;

impl WeightCounts {
    /// Counts the weights of a checkpoint from the headers of its weight files.
    pub fn of(checkpoint: &Checkpoint) -> Result<Self, ModelError> {
        Ok(Self::from_shapes(loader::weight_shapes(&checkpoint.weights)?))
    }

    fn from_shapes(shapes: impl IntoIterator<Item = (String, Vec<usize>)>) -> Self {
        let mut counts = Self {
            quantized_in_q8: 0,
            other: 0,
        };
        for (name, shape) in shapes {
            let numel = shape.iter().product::<usize>() as u64;
            let linear = name.starts_with("model.layers.")
                && (name.contains(".self_attn.") || name.contains(".mlp."))
                && name.ends_with(".weight");
            // The layers `Linear::load_q8` quantizes: whole 32-weight blocks along the input.
            if linear && shape.len() == 2 && shape[1] % 32 == 0 {
                counts.quantized_in_q8 += numel;
            } else {
                counts.other += numel;
            }
        }
        counts
    }

    /// Bytes the weights take in memory when loaded in `precision` (a resolved one) on the CPU.
    /// In q8 that is 34 bytes a block of 32: the plain blocks, or candle's tiles in their place
    /// (`q8_blocks`).
    pub fn bytes_in(&self, precision: Precision) -> u64 {
        let total = self.quantized_in_q8 + self.other;
        match precision {
            Precision::Bf16 | Precision::F16 => 2 * total,
            Precision::Auto | Precision::F32 => 4 * total,
            Precision::Q8 => self.quantized_in_q8 * 34 / 32 + 4 * self.other,
        }
    }

    /// Whether the weights in `precision` and [`ROOM_BESIDE_WEIGHTS`] fit `available` bytes:
    /// the rule by which `auto` picks a precision on the CPU, and refuses when none fits.
    pub fn fit_in(&self, precision: Precision, available: u64) -> bool {
        self.bytes_in(precision) + ROOM_BESIDE_WEIGHTS <= available
    }
}

impl Precision {
    /// What `auto` means on the CPU for a checkpoint of `counts` weights, given the memory
    /// `available` (bytes; `None` when the system does not say): f32, the reference's own
    /// precision, when its weights and [`ROOM_BESIDE_WEIGHTS`] fit, else q8. Any other choice,
    /// and any device but the CPU, is left as it is.
    pub fn for_memory(self, device: DeviceKind, counts: &WeightCounts, available: Option<u64>) -> Self {
        match (self, device, available) {
            (Self::Auto, DeviceKind::Cpu, Some(available)) if !counts.fit_in(Self::F32, available) => Self::Q8,
            _ => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_wrong_one_says_what_is_expected() {
        for precision in [
            Precision::Auto,
            Precision::F32,
            Precision::Bf16,
            Precision::F16,
            Precision::Q8,
        ] {
            assert_eq!(precision.to_string().parse::<Precision>().unwrap(), precision);
        }
        assert_eq!("Q8_0".parse::<Precision>().unwrap(), Precision::Q8);
        let err = "int4".parse::<Precision>().unwrap_err().to_string();
        assert_eq!(err, "precision \"int4\": expected auto, f32, bf16, f16 or q8");
    }

    #[test]
    fn auto_follows_the_device_and_q8_stays_on_the_cpu() {
        assert_eq!(Precision::Auto.on(DeviceKind::Cpu).unwrap(), Precision::F32);
        assert_eq!(Precision::Auto.on(DeviceKind::Cuda(0)).unwrap(), Precision::Bf16);
        assert_eq!(Precision::Q8.on(DeviceKind::Cpu).unwrap(), Precision::Q8);
        let err = Precision::Q8.on(DeviceKind::Cuda(1)).unwrap_err().to_string();
        assert!(err.contains("cuda:1") && err.contains("bf16"), "{err}");
        assert_eq!(Precision::Q8.dtype(), DType::F32);
        assert!(Precision::Q8.quantizes_language() && !Precision::F32.quantizes_language());
    }

    /// The real checkpoint's weights, by the figures of `mod.rs`: 7.5 B in the decoder layers'
    /// linear layers (LLaMA-2-7B's and the image-side key/value copies), 0.7 B elsewhere.
    const CO_INSTRUCT: WeightCounts = WeightCounts {
        quantized_in_q8: 7_550_000_000,
        other: 660_000_000,
    };
    const GB: u64 = 1_000_000_000;

    #[test]
    fn auto_takes_q8_on_a_cpu_without_memory_for_f32() {
        assert_eq!(CO_INSTRUCT.bytes_in(Precision::F32) / GB, 32);
        let q8 = CO_INSTRUCT.bytes_in(Precision::Q8) / GB;
        assert!(q8 == 10, "{q8} GB: 8.0 GB of blocks, held once, and 2.6 GB in f32");
        let choose = |device, available| Precision::Auto.for_memory(device, &CO_INSTRUCT, available);
        assert_eq!(choose(DeviceKind::Cpu, Some(16 * GB)), Precision::Q8);
        assert_eq!(
            choose(DeviceKind::Cpu, Some(64 * GB)).on(DeviceKind::Cpu).unwrap(),
            Precision::F32
        );
        assert_eq!(
            choose(DeviceKind::Cpu, None),
            Precision::Auto,
            "unknown memory: the usual f32"
        );
        assert_eq!(
            choose(DeviceKind::Cuda(0), Some(16 * GB)),
            Precision::Auto,
            "a GPU's memory is its own"
        );
        let asked = Precision::F32.for_memory(DeviceKind::Cpu, &CO_INSTRUCT, Some(16 * GB));
        assert_eq!(asked, Precision::F32, "an explicit precision is kept");
    }

    #[test]
    fn weights_are_counted_by_what_q8_quantizes() {
        let counts = WeightCounts::from_shapes([
            ("model.layers.0.self_attn.q_proj.weight".to_string(), vec![96, 96]),
            (
                "model.layers.0.self_attn.k_proj.multiway.1.weight".to_string(),
                vec![96, 96],
            ),
            ("model.layers.0.mlp.down_proj.weight".to_string(), vec![96, 192]),
            ("model.layers.0.input_layernorm.multiway.0.weight".to_string(), vec![96]),
            ("model.layers.0.self_attn.q_proj.bias".to_string(), vec![96]),
            ("model.layers.0.mlp.odd_proj.weight".to_string(), vec![8, 40]),
            ("lm_head.weight".to_string(), vec![1000, 96]),
        ]);
        assert_eq!(counts.quantized_in_q8, 96 * 96 * 2 + 96 * 192);
        assert_eq!(counts.other, 96 + 96 + 8 * 40 + 1000 * 96);
    }
}
