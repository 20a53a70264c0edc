//! `config.json` of an mPLUG-Owl2 / Co-Instruct checkpoint, mirrored with serde.
//!
//! Field names are the checkpoint's keys, so the file deserialises as it is; keys the network
//! does not use (training switches, generation defaults) are ignored. Every field has the
//! default of the reference `MPLUGOwl2Config` (Q-Future/Q-Align `configuration_mplug_owl2.py`),
//! which is the real Co-Instruct size, so a config written with `use_diff=True` still loads.

use serde::Deserialize;

/// The whole model: LLaMA-2 fields at the top level, the vision parts under `visual_config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Absent in LLaMA-1 style configs, where it equals `num_attention_heads`.
    pub num_key_value_heads: Option<usize>,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// Only `null` is supported; a scaled RoPE is refused at load time.
    pub rope_scaling: Option<serde_json::Value>,
    pub max_position_embeddings: usize,
    pub attention_bias: bool,
    pub tie_word_embeddings: bool,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
    pub visual_config: VisualConfig,
}

/// The two vision parts, as nested in the checkpoint.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct VisualConfig {
    pub visual_model: VisionConfig,
    pub visual_abstractor: AbstractorConfig,
}

/// The CLIP ViT-L/14 tower at 448 pixels.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub layer_norm_eps: f64,
    /// Only `quick_gelu` is supported (the reference hard-codes it).
    pub hidden_act: String,
}

/// The visual abstractor that turns 1025 patch tokens into 64 learned queries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AbstractorConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_learnable_queries: usize,
    pub encoder_hidden_size: usize,
    pub grid_size: usize,
    pub layer_norm_eps: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            rope_scaling: None,
            max_position_embeddings: 2048,
            attention_bias: false,
            tie_word_embeddings: false,
            bos_token_id: 1,
            eos_token_id: 2,
            visual_config: VisualConfig::default(),
        }
    }
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            num_channels: 3,
            image_size: 448,
            patch_size: 14,
            layer_norm_eps: 1e-6,
            hidden_act: "quick_gelu".to_string(),
        }
    }
}

impl Default for AbstractorConfig {
    fn default() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 2816,
            num_hidden_layers: 6,
            num_attention_heads: 16,
            num_learnable_queries: 64,
            encoder_hidden_size: 1024,
            grid_size: 32,
            layer_norm_eps: 1e-6,
        }
    }
}

impl Config {
    /// Key/value heads of the language model (grouped-query attention when fewer than heads).
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Tokens each image contributes to the language model: the queries plus `vit_eos`.
    pub fn tokens_per_image(&self) -> usize {
        self.visual_config.visual_abstractor.num_learnable_queries + 1
    }

    /// Checks the invariants the network relies on, so a bad config fails at load, not mid-run.
    pub fn validate(&self) -> Result<(), String> {
        let v = &self.visual_config.visual_model;
        let a = &self.visual_config.visual_abstractor;
        let divides = |what: &str, hidden: usize, heads: usize| {
            if heads == 0 || !hidden.is_multiple_of(heads) {
                Err(format!(
                    "{what}: hidden size {hidden} is not a multiple of {heads} heads"
                ))
            } else {
                Ok(())
            }
        };
        divides("language model", self.hidden_size, self.num_attention_heads)?;
        divides("vision tower", v.hidden_size, v.num_attention_heads)?;
        divides("abstractor", a.hidden_size, a.num_attention_heads)?;
        if !self.num_attention_heads.is_multiple_of(self.num_kv_heads().max(1)) {
            return Err(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if self.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
            return Err("rope_scaling is not supported".into());
        }
        if v.hidden_act != "quick_gelu" {
            return Err(format!("vision hidden_act {:?} is not quick_gelu", v.hidden_act));
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "image size {} is not a multiple of patch size {}",
                v.image_size, v.patch_size
            ));
        }
        if v.image_size / v.patch_size != a.grid_size {
            return Err(format!(
                "abstractor grid {} does not match the {}x{} patch grid",
                a.grid_size,
                v.image_size / v.patch_size,
                v.image_size / v.patch_size
            ));
        }
        // The abstractor attends over [its queries; the patch tokens], so all three widths agree.
        if a.encoder_hidden_size != v.hidden_size || a.hidden_size != v.hidden_size {
            return Err(format!(
                "abstractor hidden {} / encoder_hidden_size {} differ from the vision hidden size {}",
                a.hidden_size, a.encoder_hidden_size, v.hidden_size
            ));
        }
        if !a.hidden_size.is_multiple_of(4) {
            return Err(format!(
                "abstractor hidden size {} is not a multiple of 4 (sin-cos grid)",
                a.hidden_size
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_object_gives_the_real_co_instruct_sizes() {
        let cfg: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(cfg.hidden_size, 4096);
        assert_eq!(cfg.visual_config.visual_model.num_hidden_layers, 24);
        assert_eq!(cfg.tokens_per_image(), 65);
        cfg.validate().unwrap();
    }

    #[test]
    fn scaled_rope_is_refused() {
        let cfg: Config = serde_json::from_str(r#"{"rope_scaling": {"type": "linear", "factor": 2}}"#).unwrap();
        assert!(cfg.validate().unwrap_err().contains("rope_scaling"));
    }
}
