//! Finding and opening a checkpoint: a local folder or a Hugging Face hub repository.
//!
//! A checkpoint is `config.json`, the weights and (for prompting) a tokenizer. Weights may be
//! one `model.safetensors`, safetensors shards listed in `model.safetensors.index.json`, or the
//! PyTorch `pytorch_model.bin` / `pytorch_model.bin.index.json` equivalents. Safetensors are
//! memory-mapped, so loading costs page faults, not a copy; PyTorch shards are read tensor by
//! tensor as the model asks for them ([`super::pickle_shards`]).
//!
//! Hub downloads go through `hf-hub`'s cache and honour its environment: `HF_HOME` (cache root),
//! `HF_HUB_CACHE` (the cache folder itself), `HF_ENDPOINT` (mirror), `HF_TOKEN` (gated repos) and
//! `HF_HUB_OFFLINE=1` (cache only, never the network).

use std::collections::{BTreeSet, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use hf_hub::api::sync::{ApiBuilder, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

use super::config::Config;
use super::error::ModelError;
use super::pickle_shards::PickleShards;

/// The files of a checkpoint, all on the local disk: [`Checkpoint::locate`] downloads what a
/// hub id lacks in the cache once, and then counting its weights (`WeightCounts::of`) and
/// loading it on each device ([`super::CoInstruct::from_checkpoint`]) ask the hub nothing more.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Where the checkpoint came from: a folder path or a hub id.
    pub(crate) source: String,
    pub(crate) config_path: PathBuf,
    pub(crate) weights: Weights,
    /// `tokenizer.json`, else `tokenizer.model`, when the checkpoint has one.
    pub(crate) tokenizer: Option<PathBuf>,
}

/// Weight files and their format.
#[derive(Debug, Clone)]
pub(crate) enum Weights {
    Safetensors(Vec<PathBuf>),
    PyTorch(Vec<PathBuf>),
}

/// Files of a checkpoint by name, wherever they live.
trait Files {
    fn has(&self, name: &str) -> bool;
    fn get(&self, name: &str) -> Result<PathBuf, ModelError>;
    fn describe(&self) -> PathBuf;
}

struct LocalDir(PathBuf);

impl Files for LocalDir {
    fn has(&self, name: &str) -> bool {
        self.0.join(name).is_file()
    }
    fn get(&self, name: &str) -> Result<PathBuf, ModelError> {
        let path = self.0.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(ModelError::Io {
                path,
                source: std::io::ErrorKind::NotFound.into(),
            })
        }
    }
    fn describe(&self) -> PathBuf {
        self.0.clone()
    }
}

/// A hub repository, online (listing + download into the cache) or offline (cache only).
struct Hub {
    repo_id: String,
    mode: HubMode,
}

enum HubMode {
    Online {
        repo: Box<ApiRepo>,
        listing: BTreeSet<String>,
    },
    Offline(hf_hub::CacheRepo),
}

impl Hub {
    fn open(repo_id: &str) -> Result<Self, ModelError> {
        let (id, revision) = match repo_id.split_once('@') {
            Some((id, rev)) => (id, rev.to_string()),
            None => (repo_id, "main".to_string()),
        };
        let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision);
        let cache = match std::env::var_os("HF_HUB_CACHE") {
            Some(dir) => Cache::new(dir.into()),
            None => Cache::from_env(),
        };
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
        if offline {
            return Ok(Self {
                repo_id: id.to_string(),
                mode: HubMode::Offline(cache.repo(repo)),
            });
        }
        let hub_err = |file: &str, e: &dyn std::fmt::Display| ModelError::Hub {
            repo: id.to_string(),
            file: file.to_string(),
            reason: format!("{e} (set HF_HUB_OFFLINE=1 to use the cache, or pass a local folder)"),
        };
        // A bar per file while a download runs, only where someone watches: the real
        // checkpoint is 16 GB, and a service's log is no place for bars.
        let watched = std::io::stderr().is_terminal();
        let mut builder = ApiBuilder::from_cache(cache).with_progress(watched);
        if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
            builder = builder.with_endpoint(endpoint);
        }
        if let Ok(token) = std::env::var("HF_TOKEN") {
            builder = builder.with_token(Some(token));
        }
        let api = builder.build().map_err(|e| hub_err("(client)", &e))?;
        let repo = api.repo(repo);
        let info = repo.info().map_err(|e| hub_err("(listing)", &e))?;
        let listing = info.siblings.into_iter().map(|s| s.rfilename).collect();
        Ok(Self {
            repo_id: id.to_string(),
            mode: HubMode::Online {
                repo: Box::new(repo),
                listing,
            },
        })
    }
}

impl Files for Hub {
    fn has(&self, name: &str) -> bool {
        match &self.mode {
            HubMode::Online { listing, .. } => listing.contains(name),
            HubMode::Offline(cache) => cache.get(name).is_some(),
        }
    }
    fn get(&self, name: &str) -> Result<PathBuf, ModelError> {
        match &self.mode {
            HubMode::Online { repo, .. } => repo.get(name).map_err(|e| ModelError::Hub {
                repo: self.repo_id.clone(),
                file: name.to_string(),
                reason: e.to_string(),
            }),
            HubMode::Offline(cache) => cache.get(name).ok_or_else(|| ModelError::Offline {
                repo: self.repo_id.clone(),
                file: name.to_string(),
            }),
        }
    }
    fn describe(&self) -> PathBuf {
        PathBuf::from(&self.repo_id)
    }
}

impl Checkpoint {
    /// Resolves `source`, a local folder or a hub id (`owner/name`, optionally `@revision`), to
    /// files on disk, downloading what is missing from the cache.
    pub fn locate(source: &str) -> Result<Self, ModelError> {
        let path = Path::new(source);
        let files: Box<dyn Files> = if path.is_dir() {
            Box::new(LocalDir(path.to_path_buf()))
        } else if path.exists() || source.starts_with('.') || source.starts_with('/') || source.split('/').count() != 2
        {
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                source: std::io::ErrorKind::NotADirectory.into(),
            });
        } else {
            Box::new(Hub::open(source)?)
        };
        let config_path = files.get("config.json")?;
        let weights = if files.has("model.safetensors.index.json") {
            Weights::Safetensors(shards(files.as_ref(), "model.safetensors.index.json")?)
        } else if files.has("model.safetensors") {
            Weights::Safetensors(vec![files.get("model.safetensors")?])
        } else if files.has("pytorch_model.bin.index.json") {
            Weights::PyTorch(shards(files.as_ref(), "pytorch_model.bin.index.json")?)
        } else if files.has("pytorch_model.bin") {
            Weights::PyTorch(vec![files.get("pytorch_model.bin")?])
        } else {
            return Err(ModelError::NoWeights { dir: files.describe() });
        };
        let tokenizer = ["tokenizer.json", "tokenizer.model"]
            .into_iter()
            .find(|name| files.has(name))
            .map(|name| files.get(name))
            .transpose()?;
        Ok(Self {
            source: source.to_string(),
            config_path,
            weights,
            tokenizer,
        })
    }

    /// Where the checkpoint came from, as [`Checkpoint::locate`] was given it.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The shard files named by a `*.index.json`'s `weight_map`, each fetched once.
fn shards(files: &dyn Files, index_name: &str) -> Result<Vec<PathBuf>, ModelError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: HashMap<String, String>,
    }
    let index_path = files.get(index_name)?;
    let text = std::fs::read_to_string(&index_path).map_err(|source| ModelError::Io {
        path: index_path.clone(),
        source,
    })?;
    let index: Index = serde_json::from_str(&text).map_err(|e| ModelError::WeightIndex {
        path: index_path.clone(),
        reason: e.to_string(),
    })?;
    let names: BTreeSet<String> = index.weight_map.into_values().collect();
    if names.is_empty() {
        return Err(ModelError::WeightIndex {
            path: index_path,
            reason: "weight_map is empty".into(),
        });
    }
    names.iter().map(|name| files.get(name)).collect()
}

/// Reads and validates `config.json`.
pub(crate) fn read_config(path: &Path) -> Result<Config, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let config: Config = serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    config.validate().map_err(|reason| ModelError::Config {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(config)
}

/// A `VarBuilder` over the weights, converting every tensor to `dtype` on `device` as it is read.
pub(crate) fn open_weights(
    weights: &Weights,
    dtype: DType,
    device: &Device,
) -> Result<VarBuilder<'static>, ModelError> {
    match weights {
        Weights::Safetensors(paths) => {
            for path in paths {
                // Surface a missing or unreadable file with its name before mapping it.
                std::fs::metadata(path).map_err(|source| ModelError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
            // SAFETY: the files are mapped read-only and never written by this process. As with
            // every mmap, a checkpoint truncated by another process while mapped is undefined
            // behaviour; checkpoints are immutable files in a cache or a model folder.
            #[allow(unsafe_code)]
            let vb = unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, device) };
            vb.map_err(|source| ModelError::Weights {
                path: paths[0].clone(),
                source,
            })
        }
        Weights::PyTorch(paths) => Ok(VarBuilder::from_backend(
            Box::new(PickleShards::open(paths)?),
            dtype,
            device.clone(),
        )),
    }
}

/// Every tensor's name and shape, read from the files' headers without their data.
pub(crate) fn weight_shapes(weights: &Weights) -> Result<Vec<(String, Vec<usize>)>, ModelError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Weights { path, source }
    };
    let mut shapes = Vec::new();
    match weights {
        Weights::Safetensors(paths) => {
            for path in paths {
                // SAFETY: as in `open_weights`: mapped read-only, only the header is read.
                #[allow(unsafe_code)]
                let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.map_err(failed(path))?;
                shapes.extend(
                    file.tensors()
                        .into_iter()
                        .map(|(name, view)| (name, view.shape().to_vec())),
                );
            }
        }
        Weights::PyTorch(paths) => {
            for path in paths {
                let infos = candle_core::pickle::read_pth_tensor_info(path, false, None).map_err(failed(path))?;
                shapes.extend(
                    infos
                        .into_iter()
                        .map(|info| (info.name, info.layout.shape().dims().to_vec())),
                );
            }
        }
    }
    Ok(shapes)
}

/// Reads `tokenizer.json`, or converts a SentencePiece `tokenizer.model`.
pub(crate) fn read_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer, ModelError> {
    let error = |reason: String| ModelError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    if path.extension().is_some_and(|e| e == "model") {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        super::sentencepiece::tokenizer_from_model(&bytes).map_err(error)
    } else {
        tokenizers::Tokenizer::from_file(path).map_err(|e| error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_safetensors_are_found_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let index = r#"{"metadata": {}, "weight_map": {"a": "s-1.safetensors", "b": "s-2.safetensors", "c": "s-1.safetensors"}}"#;
        std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
        for shard in ["s-1.safetensors", "s-2.safetensors"] {
            std::fs::write(dir.path().join(shard), b"").unwrap();
        }
        let ckpt = Checkpoint::locate(dir.path().to_str().unwrap()).unwrap();
        match ckpt.weights {
            Weights::Safetensors(paths) => assert_eq!(paths.len(), 2),
            other => panic!("unexpected {other:?}"),
        }
        assert!(ckpt.tokenizer.is_none());
    }

    #[test]
    fn a_folder_without_weights_says_what_it_expected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let err = Checkpoint::locate(dir.path().to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }

    #[test]
    fn offline_cache_miss_tells_how_to_use_a_local_folder() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub {
            repo_id: "q-future/co-instruct".into(),
            mode: HubMode::Offline(Cache::new(dir.path().to_path_buf()).model("q-future/co-instruct".into())),
        };
        let err = hub.get("config.json").unwrap_err().to_string();
        assert!(
            err.contains("HF_HUB_OFFLINE") && err.contains("local checkpoint folder"),
            "{err}"
        );
    }

    #[test]
    fn tokenizer_model_is_read_as_sentencepiece() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.model");
        let pieces = [
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("▁", -1.0, 1),
            ("A", -2.0, 1),
            ("▁A", -3.0, 1),
        ];
        std::fs::write(&path, super::super::sentencepiece::proto::model_proto(&pieces)).unwrap();
        let tokenizer = read_tokenizer(&path).unwrap();
        assert_eq!(tokenizer.encode("A", true).unwrap().get_ids(), &[1, 5]);
        std::fs::write(&path, b"\xff\xff").unwrap();
        let err = read_tokenizer(&path).unwrap_err().to_string();
        assert!(err.contains("tokenizer.model"), "{err}");
    }
}
