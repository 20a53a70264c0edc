//! Listing a local folder.
//!
//! object_store's own walk of a folder ends at the first entry it cannot read: a symlink loop, or
//! a sub-folder without read permission (as on many external drives), and every image after it
//! is lost with the run. Here such an entry is reported and the walk goes on. Entries come
//! sorted by name, so the same folder lists, and so plans for a seed, the same on any file
//! system; hidden sub-folders (`.thumbnails`, `.Trash`) are not entered.
//!
//! Locations are made as object_store makes them (the file's URL relative to the folder's), so
//! the folder's `LocalFileSystem` reads each one back.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::ObjectMeta;
use url::Url;
use walkdir::{DirEntry, WalkDir};

use super::ListError;

/// Entries read per blocking task: the walk does blocking file-system calls, off the async
/// threads.
const CHUNK: usize = 1024;

/// Every file under `root` (a canonical folder path), or only its direct children; `display_base`
/// names the folder to the user.
pub(super) fn walk(
    root: PathBuf,
    recursive: bool,
    display_base: String,
) -> BoxStream<'static, Result<ObjectMeta, ListError>> {
    let Ok(root_url) = Url::from_directory_path(&root) else {
        let reason = format!("{}: not an absolute folder path", root.display());
        return stream::iter([Err(ListError::Listing(reason))]).boxed();
    };
    let walker = WalkDir::new(&root)
        .min_depth(1)
        .max_depth(if recursive { usize::MAX } else { 1 })
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !(entry.file_type().is_dir() && is_hidden(entry)));
    let describe = move |entry: walkdir::Result<DirEntry>| describe(entry, &root, &root_url, &display_base);
    stream::unfold(Some((walker, describe)), |state| async move {
        let (mut walker, describe) = state?;
        let (walker, describe, chunk) = tokio::task::spawn_blocking(move || {
            let chunk: Vec<_> = walker.by_ref().take(CHUNK).filter_map(&describe).collect();
            (walker, describe, chunk)
        })
        .await
        .ok()?;
        (!chunk.is_empty()).then(|| (stream::iter(chunk), Some((walker, describe))))
    })
    .flatten()
    .boxed()
}

fn is_hidden(entry: &DirEntry) -> bool {
    entry.file_name().to_string_lossy().starts_with('.')
}

/// A file's metadata, an entry that could not be read, or nothing for a folder.
fn describe(
    entry: walkdir::Result<DirEntry>,
    root: &std::path::Path,
    root_url: &Url,
    display_base: &str,
) -> Option<Result<ObjectMeta, ListError>> {
    let name_of = |path: Option<&std::path::Path>| match path.and_then(|p| p.strip_prefix(root).ok()) {
        Some(relative) => format!("{display_base}{}", relative.display()),
        None => display_base.to_owned(),
    };
    let entry = match entry {
        Ok(entry) => entry,
        Err(e) => {
            let name = name_of(e.path());
            return Some(Err(ListError::Entry {
                reason: format!("{name}: skipped while listing: {e}"),
                name,
            }));
        }
    };
    if !entry.file_type().is_file() {
        return None;
    }
    let unreadable = |reason: String| {
        let name = name_of(Some(entry.path()));
        Some(Err(ListError::Entry {
            reason: format!("{name}: skipped while listing: {reason}"),
            name,
        }))
    };
    let location = match location(entry.path(), root_url) {
        Ok(location) => location,
        Err(reason) => return unreadable(reason),
    };
    let metadata = match entry.metadata() {
        Ok(metadata) => metadata,
        Err(e) => return unreadable(e.to_string()),
    };
    let last_modified = metadata
        .modified()
        .map_or(DateTime::<Utc>::UNIX_EPOCH, DateTime::<Utc>::from);
    Some(Ok(ObjectMeta {
        location,
        last_modified,
        size: metadata.len(),
        e_tag: None,
        version: None,
    }))
}

/// The object_store location of `path` under the folder whose URL is `root_url`.
fn location(path: &std::path::Path, root_url: &Url) -> Result<Path, String> {
    let url = Url::from_file_path(path).map_err(|()| "not an absolute path".to_owned())?;
    let relative = url
        .path()
        .strip_prefix(root_url.path())
        .ok_or_else(|| "outside the folder".to_owned())?;
    Path::from_url_path(relative).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::local::LocalFileSystem;
    use object_store::{ObjectStore, ObjectStoreExt};

    /// Names that need escaping in a URL or in object_store's paths are read back by the
    /// folder's store, come sorted, and are the locations object_store's own walk gives.
    #[tokio::test]
    async fn every_listed_file_reads_back_through_the_folder_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let names = ["a b.jpg", "a%20b.jpg", "100% real#1.jpg", "ünïcode.jpg", "x, \"q\".jpg"];
        for (i, name) in names.iter().enumerate() {
            std::fs::write(root.join(name), vec![b'0' + i as u8; i + 1]).unwrap();
        }
        let store = LocalFileSystem::new_with_prefix(&root).unwrap();
        let listed: Vec<ObjectMeta> = walk(root.clone(), true, "photos/".into())
            .map_err(|_| "listing error")
            .try_collect()
            .await
            .unwrap();
        let mut sorted: Vec<&str> = names.to_vec();
        sorted.sort_unstable();
        let listed_names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
        assert_eq!(listed_names, sorted);
        for meta in &listed {
            let bytes = store.get(&meta.location).await.unwrap().bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, meta.size, "{}", meta.location);
        }
        // The same locations as object_store's own walk makes.
        let mut theirs: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        theirs.sort_unstable();
        assert_eq!(theirs, listed_names);
    }

    #[tokio::test]
    async fn hidden_folders_are_not_entered_and_only_recursive_walks_descend() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        for folder in [".thumbnails", "sub"] {
            std::fs::create_dir(root.join(folder)).unwrap();
            std::fs::write(root.join(folder).join("x.jpg"), b"x").unwrap();
        }
        std::fs::write(root.join("top.jpg"), b"x").unwrap();
        let names = |recursive: bool| {
            let root = root.clone();
            async move {
                walk(root, recursive, String::new())
                    .map_ok(|m| m.location.to_string())
                    .map_err(|_| "listing error")
                    .try_collect::<Vec<_>>()
                    .await
                    .unwrap()
            }
        };
        assert_eq!(names(true).await, ["sub/x.jpg", "top.jpg"]);
        assert_eq!(names(false).await, ["top.jpg"]);
    }
}
