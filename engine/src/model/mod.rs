//! Co-Instruct, the multimodal model that compares image quality, in candle.
//!
//! Paper: *Towards Open-ended Visual Quality Comparison* (Co-Instruct, arXiv 2402.16641), an
//! mPLUG-Owl2 (arXiv 2311.04257) fine-tuned to compare up to four images.
//! Reference code: Q-Future/Q-Align `q_align/model/` at 14dfdffb (the code base Co-Instruct was
//! trained with). Checkpoint: `q-future/co-instruct` on the Hugging Face hub.
//!
//! The network is a CLIP ViT-L/14 vision tower at 448 pixels, a visual abstractor that reduces
//! each image to 65 tokens, and LLaMA-2-7B with mPLUG-Owl2's modality-adaptive module.
//! `../shared/golden/coinstruct-tiny/README.md` pins every detail; `tests/model_golden.rs`
//! checks each stage against its reference tensors.
//!
//! Public API (everything else is private):
//! - `CoInstruct::load(source, &LoadOptions)`: `source` is a local checkpoint folder or a hub id.
//! - `CoInstruct` implements [`crate::compare::Comparator`] (group scoring) and has
//!   `CoInstruct::answer` for open questions.
//! - [`Config`] mirrors the checkpoint's `config.json`; [`ModelError`] is the one error type.

mod abstractor;
mod cache;
mod comparator;
mod config;
mod error;
mod language;
mod layers;
mod loader;
mod network;
#[doc(hidden)]
pub mod parity;
mod preprocess;
mod prompt;
mod sentencepiece;
mod vision;

pub use comparator::{CoInstruct, DeviceKind, LoadOptions, Precision};
pub use config::{AbstractorConfig, Config, VisionConfig, VisualConfig};
pub use error::ModelError;
