//! The numeric precision a checkpoint is loaded in.
//!
//! The real checkpoint has about 8.2 B parameters: 33 GB in f32, 16.5 GB in bf16 or f16. A GPU
//! takes bf16. On a CPU, f32 is the precise path but needs a 40 GB machine, and candle's CPU
//! products in bf16 are slow. [`Precision::Q8`] is for the laptop: the language model's linear
//! layers (6.7 B of the 8.2 B weights, and the bulk of every call's arithmetic) are stored as
//! GGML `Q8_0` blocks (32 weights sharing one f16 scale, 8.5 bits a weight) and multiplied by
//! candle's integer dot products, which quantize each activation row to the same blocks. The
//! vision tower, abstractor, embeddings, norms and `lm_head` stay in f32, so the answer logits
//! are read off an f32 projection. The whole model then takes about 10 GB.
//!
//! Measured on the 2-core development machine (AVX-512), one `[308, 4096] x [4096, 11008]`
//! product (a group-of-4 prompt through an MLP projection): f32 96 ms, `Q8_0` 53 ms; one row
//! (a decoding step) 16 ms against 1.7 ms. `Q4_0` and `Q4K` lose 8x as much accuracy; `Q4_0`'s
//! product with many rows is 6.5x slower than f32 here. Accuracy and whole-call timings:
//! `tests/model_golden.rs` and the README.

use std::fmt;

use candle_core::DType;

use super::device::DeviceKind;
use super::error::ModelError;

/// Numeric precision of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Precision {
    /// f32 on the CPU, bf16 on a GPU.
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
}
