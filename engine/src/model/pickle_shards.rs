//! PyTorch checkpoint shards (`pytorch_model*.bin`) read lazily, tensor by tensor.
//!
//! Reading every shard whole before building the model, as `candle_core::pickle::read_all`
//! does, holds the checkpoint in memory beside the model being built: 16 GB more at
//! Co-Instruct's size, which is what `--precision q8` exists to avoid. Here a tensor is read
//! from its shard's zip entry only when the model asks for it, and dropped once converted (and,
//! in q8, quantized), as with memory-mapped safetensors.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::pickle::PthTensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::Init;

use super::error::ModelError;

/// The shards of a PyTorch checkpoint, and which shard holds each tensor (from the pickles'
/// headers; no data is read until asked for).
pub(crate) struct PickleShards {
    shards: Vec<PthTensors>,
    shard_of: HashMap<String, usize>,
}

impl PickleShards {
    pub(crate) fn open(paths: &[PathBuf]) -> Result<Self, ModelError> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut shard_of = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let shard = PthTensors::new(path, None).map_err(|source| ModelError::Weights {
                path: path.clone(),
                source,
            })?;
            shard_of.extend(shard.tensor_infos().keys().map(|name| (name.clone(), index)));
            shards.push(shard);
        }
        Ok(Self { shards, shard_of })
    }
}

impl SimpleBackend for PickleShards {
    fn get(&self, shape: Shape, name: &str, _: Init, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, device)?;
        if tensor.shape() != &shape {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: shape,
                got: tensor.shape().clone(),
            });
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
        let missing = || candle_core::Error::CannotFindTensor { path: name.to_owned() };
        let shard = self.shard_of.get(name).ok_or_else(missing)?;
        let tensor = self.shards[*shard].get(name)?.ok_or_else(missing)?;
        tensor.to_device(device)?.to_dtype(dtype)
    }

    /// From the headers: candle's own `PthTensors` reads the tensor to answer this.
    fn contains_tensor(&self, name: &str) -> bool {
        self.shard_of.contains_key(name)
    }
}
