//! Why an image could not be used. Every variant names the file, because the user sees these in
//! a list of skipped files and must be able to find the culprit.

/// A failure to turn one file into an RGB image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("{name}: empty file")]
    Empty { name: String },
    #[error("{name}: unsupported format: {detail}")]
    Unsupported { name: String, detail: String },
    #[error("{name}: truncated: {detail}")]
    Truncated { name: String, detail: String },
    #[error("{name}: over a limit: {detail}")]
    OverLimit { name: String, detail: String },
    #[error("{name}: corrupt: {detail}")]
    Corrupt { name: String, detail: String },
}

impl ImageError {
    /// A short fixed label for metrics and reports: never the free-form detail.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty",
            Self::Unsupported { .. } => "unsupported",
            Self::Truncated { .. } => "truncated",
            Self::OverLimit { .. } => "over_limit",
            Self::Corrupt { .. } => "corrupt",
        }
    }
}
