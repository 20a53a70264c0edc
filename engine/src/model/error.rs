//! The one error type of the model: every variant names the file, tensor or input involved.

use std::path::PathBuf;

/// What went wrong while loading or running Co-Instruct.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("no weights in {dir}: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or pytorch_model.bin.index.json")]
    NoWeights { dir: PathBuf },
    #[error("invalid weight index {path}: {reason}")]
    WeightIndex { path: PathBuf, reason: String },
    #[error("cannot load weights {path}: {source}")]
    Weights {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    /// A tensor failed to load (missing or wrongly shaped) or an op on it failed.
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("no tokenizer in {dir}: expected tokenizer.json or tokenizer.model")]
    NoTokenizer { dir: PathBuf },
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("cannot fetch {file} of {repo} from the Hugging Face hub: {reason}")]
    Hub { repo: String, file: String, reason: String },
    #[error(
        "{file} of {repo} is not in the hub cache and HF_HUB_OFFLINE is set; download it once online, \
         or pass the path of a local checkpoint folder (with config.json and the weights) instead of the hub id"
    )]
    Offline { repo: String, file: String },
    #[error("precision {name:?}: {reason}")]
    Precision { name: String, reason: String },
    #[error("device {spec:?}: {reason}")]
    Device { spec: String, reason: String },
    #[error("prompt: {0}")]
    Prompt(String),
    #[error("image {image}: {reason}")]
    Image { image: String, reason: String },
}

/// Attaches a description of what was being done to a candle error.
pub(crate) trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ModelError>;
}

impl<T> Context<T> for Result<T, candle_core::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, ModelError> {
        self.map_err(|source| ModelError::Tensor {
            context: context(),
            source,
        })
    }
}
