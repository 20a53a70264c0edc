//! Which quality model judges the images, and loading it.
//!
//! A model is named on the command line or in the service config: `brisque` and `niqe` are
//! built in; anything else is a Co-Instruct checkpoint, as a Hugging Face hub id
//! (`q-future/co-instruct`, optionally `@revision`) or a local folder.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use engine::classical::{Brisque, Niqe};
use engine::compare::Comparator;
use engine::model::{CoInstruct, DeviceKind, LoadOptions, DEFAULT_EMBEDDING_CACHE_BYTES};

/// A model name as the user writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Brisque,
    Niqe,
    /// A Co-Instruct checkpoint: a hub id or a folder.
    CoInstruct(String),
}

impl FromStr for ModelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Err("the model name is empty".into()),
            name if name.eq_ignore_ascii_case("brisque") => Ok(Self::Brisque),
            name if name.eq_ignore_ascii_case("niqe") => Ok(Self::Niqe),
            name if name.contains('/') || std::path::Path::new(name).is_dir() => Ok(Self::CoInstruct(name.to_owned())),
            name => Err(format!(
                "unknown model {name:?}: expected brisque, niqe, a Hugging Face hub id such as \
                 q-future/co-instruct, or a checkpoint folder"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ModelSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Brisque => f.write_str("brisque"),
            Self::Niqe => f.write_str("niqe"),
            Self::CoInstruct(source) => f.write_str(source),
        }
    }
}

/// The default of `--embedding-cache-mib` and `model.embedding_cache_mib`: the engine's.
pub const DEFAULT_EMBEDDING_CACHE_MIB: usize = DEFAULT_EMBEDDING_CACHE_BYTES >> 20;

/// What the embedding cache is for and how to size it, for the CLI's help and the config docs.
pub const EMBEDDING_CACHE_HELP: &str = "An image compared again takes its 65 language-model tokens \
     from this cache instead of the vision tower, which is half of a call's time on a GPU. Each \
     image takes 0.5 MiB in bf16 (the GPU default) and 1 MiB in f32 (the CPU default). The cache \
     helps when it holds every image still in play: a round visits them all, so one that holds \
     half of them loses most before their next call (about one image in eight is found). Give it \
     N x 0.5 MiB for batches of N images on a GPU, where there is memory to spare.";

/// Load the comparator `spec` names. A Co-Instruct checkpoint may be downloaded first; it keeps
/// up to `embedding_cache_mib` MiB of image tokens.
pub fn load(spec: &ModelSpec, embedding_cache_mib: usize) -> Result<Arc<dyn Comparator>> {
    Ok(match spec {
        ModelSpec::Brisque => Arc::new(Brisque::default()),
        ModelSpec::Niqe => Arc::new(Niqe::default()),
        ModelSpec::CoInstruct(source) => Arc::new(load_coinstruct(source, embedding_cache_mib)?),
    })
}

/// Load a Co-Instruct checkpoint on the device `QRANK_DEVICE` names (`cpu`, the default, or
/// `cuda:N`, which needs a binary built with `--features cuda`).
pub fn load_coinstruct(source: &str, embedding_cache_mib: usize) -> Result<CoInstruct> {
    let options = load_options(std::env::var("QRANK_DEVICE").ok().as_deref(), embedding_cache_mib)?;
    CoInstruct::load(source, &options).with_context(|| format!("loading Co-Instruct from {source}"))
}

/// The load options for a `QRANK_DEVICE` value and a cache size.
fn load_options(device: Option<&str>, embedding_cache_mib: usize) -> Result<LoadOptions> {
    let device = match device {
        None | Some("") | Some("cpu") => DeviceKind::Cpu,
        Some(other) => {
            let ordinal = other.strip_prefix("cuda:").and_then(|n| n.parse().ok());
            DeviceKind::Cuda(ordinal.with_context(|| format!("QRANK_DEVICE={other}: expected cpu or cuda:N"))?)
        }
    };
    let embedding_cache_bytes = embedding_cache_mib.checked_mul(1 << 20).with_context(|| {
        format!("an embedding cache of {embedding_cache_mib} MiB is more than this machine can address")
    })?;
    Ok(LoadOptions {
        device,
        embedding_cache_bytes,
        ..LoadOptions::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_options_take_the_device_and_the_cache_size() {
        let options = load_options(Some("cuda:1"), 2048).unwrap();
        assert_eq!(options.device, DeviceKind::Cuda(1));
        assert_eq!(options.embedding_cache_bytes, 2048 << 20);
        let options = load_options(None, 0).unwrap();
        assert_eq!(options.device, DeviceKind::Cpu);
        assert_eq!(options.embedding_cache_bytes, 0);
        let err = load_options(Some("gpu0"), 1).unwrap_err().to_string();
        assert!(err.contains("QRANK_DEVICE=gpu0"), "{err}");
        let err = load_options(None, usize::MAX).unwrap_err().to_string();
        assert!(err.contains("embedding cache"), "{err}");
    }

    #[test]
    fn the_default_cache_is_the_engines() {
        assert_eq!(
            DEFAULT_EMBEDDING_CACHE_MIB << 20,
            LoadOptions::default().embedding_cache_bytes
        );
    }
}
