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
use engine::model::{CoInstruct, DeviceKind, LoadOptions};

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

/// Load the comparator `spec` names. A Co-Instruct checkpoint may be downloaded first.
pub fn load(spec: &ModelSpec) -> Result<Arc<dyn Comparator>> {
    Ok(match spec {
        ModelSpec::Brisque => Arc::new(Brisque::default()),
        ModelSpec::Niqe => Arc::new(Niqe::default()),
        ModelSpec::CoInstruct(source) => Arc::new(load_coinstruct(source)?),
    })
}

/// Load a Co-Instruct checkpoint on the device `QRANK_DEVICE` names (`cpu`, the default, or
/// `cuda:N`, which needs a binary built with `--features cuda`).
pub fn load_coinstruct(source: &str) -> Result<CoInstruct> {
    let device = match std::env::var("QRANK_DEVICE").ok().as_deref() {
        None | Some("") | Some("cpu") => DeviceKind::Cpu,
        Some(other) => {
            let ordinal = other.strip_prefix("cuda:").and_then(|n| n.parse().ok());
            DeviceKind::Cuda(ordinal.with_context(|| format!("QRANK_DEVICE={other}: expected cpu or cuda:N"))?)
        }
    };
    let options = LoadOptions {
        device,
        ..LoadOptions::default()
    };
    CoInstruct::load(source, &options).with_context(|| format!("loading Co-Instruct from {source}"))
}
