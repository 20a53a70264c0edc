//! Fetching and decoding one image, shared by the CLI's pipeline and the service's loaders.
//!
//! A fetch is retried with exponential backoff, since object stores fail transiently; a decode
//! is not, since the bytes will not change. Every failure becomes a [`FileError`] that names the
//! file, so it can be reported in the ranking instead of failing the run.

use std::time::Duration;

use engine::image::{decode, Image, Limits};
use object_store::{ObjectMeta, ObjectStoreExt};

use crate::pipeline::FileError;
use crate::source::Source;

/// First wait before retrying a failed fetch; doubled after each failure.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// Fetch the bytes of `meta`, trying up to `attempts` times. Objects over the byte limit are
/// refused before any byte is read.
pub async fn fetch(
    source: &Source,
    meta: &ObjectMeta,
    name: &str,
    limits: &Limits,
    attempts: u32,
) -> Result<impl AsRef<[u8]> + Send + 'static, FileError> {
    limits.check_bytes(name, meta.size).map_err(|e| FileError {
        name: name.to_owned(),
        kind: e.kind(),
        reason: e.to_string(),
    })?;
    let mut wait = FIRST_RETRY;
    let mut attempt = 1;
    loop {
        match async { source.store.get(&meta.location).await?.bytes().await }.await {
            Ok(bytes) => return Ok(bytes),
            // A missing object will not appear by retrying.
            Err(e) if attempt >= attempts || matches!(e, object_store::Error::NotFound { .. }) => {
                return Err(FileError {
                    name: name.to_owned(),
                    kind: "fetch",
                    reason: format!("{name}: {e}"),
                })
            }
            Err(e) => {
                tracing::debug!(name, attempt, error = %e, "fetch failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
        }
    }
}

/// Decode fetched bytes; blocking work, for a blocking thread.
pub fn decode_image(name: &str, bytes: &[u8], limits: &Limits) -> Result<Image, FileError> {
    decode(name, bytes, limits).map_err(|e| FileError {
        name: name.to_owned(),
        kind: e.kind(),
        reason: e.to_string(),
    })
}
