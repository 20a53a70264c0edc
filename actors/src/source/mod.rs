//! Where images come from: a local folder or any URL `object_store` understands.
//!
//! Listing is a stream, so a prefix with a million keys never sits in memory at once. A local
//! folder is walked by [`folder`], which reports an entry it cannot read and goes on.

mod folder;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::{local::LocalFileSystem, path::Path, ObjectMeta, ObjectStore};
use url::Url;

use crate::cli::UsageError;

/// An object store and the prefix under which the job's images live.
#[derive(Clone)]
pub struct Source {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Option<Path>,
    /// What to put before a key when naming an image to the user: the folder or the URL.
    display_base: String,
    /// A folder on this machine, canonical: walked by [`folder::walk`] rather than listed.
    folder: Option<PathBuf>,
}

/// Why a listing gave no object.
#[derive(Debug)]
pub enum ListError {
    /// One entry of a local folder could not be read (a symlink loop, an unreadable sub-folder):
    /// reported as that entry's error, and the walk went on.
    Entry { name: String, reason: String },
    /// The listing itself failed (an object store's client has already retried).
    Listing(String),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("base", &self.display_base)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Source {
    /// Open `spec`: a folder path, or a URL with scheme file, s3, gs, az, abfs(s) or http(s).
    /// Cloud credentials come from the environment, as each provider's SDK would read them.
    pub fn open(spec: &str) -> Result<Self> {
        match Url::parse(spec) {
            Ok(url) if url.scheme().len() > 1 => Self::open_url(spec, &url),
            // No scheme, or a Windows drive letter: a local folder.
            _ => Self::open_folder(spec),
        }
    }

    fn open_folder(folder: &str) -> Result<Self> {
        let meta = std::fs::metadata(folder).map_err(|e| UsageError(format!("{folder}: {e}")))?;
        if !meta.is_dir() {
            return Err(UsageError(format!("{folder}: not a folder")).into());
        }
        let store = LocalFileSystem::new_with_prefix(folder).with_context(|| format!("opening folder {folder}"))?;
        let canonical = std::fs::canonicalize(folder).map_err(|e| UsageError(format!("{folder}: {e}")))?;
        let base = folder.trim_end_matches('/').to_owned();
        Ok(Self {
            store: Arc::new(store),
            prefix: None,
            display_base: format!("{base}/"),
            folder: Some(canonical),
        })
    }

    fn open_url(spec: &str, url: &Url) -> Result<Self> {
        if url.scheme() == "file" {
            let folder = url
                .to_file_path()
                .map_err(|()| UsageError(format!("{spec}: not a local path")))?;
            return Self::open_folder(&folder.to_string_lossy());
        }
        let options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| ["AWS_", "GOOGLE_", "AZURE_"].iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let (store, prefix) =
            object_store::parse_url_opts(url, options).map_err(|e| UsageError(format!("{spec}: cannot open: {e}")))?;
        let root = format!("{}://{}/", url.scheme(), url.host_str().unwrap_or_default());
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        Ok(Self {
            store: Arc::from(store),
            prefix,
            display_base: root,
            folder: None,
        })
    }

    /// The source as the user named it: the folder, or the URL with its prefix.
    pub fn url(&self) -> String {
        match &self.prefix {
            Some(prefix) => format!("{}{prefix}/", self.display_base),
            None => self.display_base.clone(),
        }
    }

    /// The root that object locations are relative to: the URL's scheme and bucket, or the
    /// folder. Opening it again gives a source that reads the same locations.
    pub fn store_root(&self) -> &str {
        &self.display_base
    }

    /// The name a user sees for `location`.
    pub fn display_name(&self, location: &Path) -> String {
        format!("{}{}", self.display_base, location)
    }

    /// Every object under the prefix (recursively, or only direct children), skipping hidden
    /// files such as `.DS_Store`.
    pub fn list(&self, recursive: bool) -> BoxStream<'static, Result<ObjectMeta, ListError>> {
        let store_error = |e: object_store::Error| ListError::Listing(e.to_string());
        let listing: BoxStream<'static, _> = match &self.folder {
            Some(root) => folder::walk(root.clone(), recursive, self.display_base.clone()),
            None if recursive => self.store.list(self.prefix.as_ref()).map_err(store_error).boxed(),
            None => {
                let store = self.store.clone();
                let prefix = self.prefix.clone();
                stream::once(async move { store.list_with_delimiter(prefix.as_ref()).await })
                    .map_ok(|listing| stream::iter(listing.objects.into_iter().map(Ok)))
                    .try_flatten()
                    .map_err(store_error)
                    .boxed()
            }
        };
        listing
            .try_filter(|meta| {
                let hidden = meta.location.filename().is_some_and(|name| name.starts_with('.'));
                futures::future::ready(!hidden)
            })
            .boxed()
    }
}
