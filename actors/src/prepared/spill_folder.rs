//! This process's folder of spilled images, and the removal of folders left by dead processes.
//!
//! A spilled image's file is deleted when its job drops it, but a process that is killed (out of
//! memory, or a container restart) deletes nothing. In Kubernetes the spill folder is on the
//! pod's `emptyDir`, which outlives a container restart, so each crash would leave up to a job's
//! images behind until the volume's size limit evicts the pod. So every process spills into a
//! folder of its own, `qrank-spill-*`, holding an exclusive lock on the `lock` file inside it for
//! as long as it lives; the kernel releases the lock when the process dies, however it dies. When
//! a process makes its folder it removes every sibling whose lock it can take. Folders of live
//! processes, including other `qrank rank` runs sharing `TMPDIR`, keep their locks and are left
//! alone. (A process id would not do: in a container the restarted process has the same one.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use tempfile::TempDir;

const PREFIX: &str = "qrank-spill-";
const LOCK: &str = "lock";

/// A folder made less than this long ago may still be waiting for its lock file; it is not
/// taken for dead.
const GRACE: Duration = Duration::from_secs(60);

/// This process's spill folder, removed when it is dropped (and by the next process to spill,
/// if this one dies first).
#[derive(Debug)]
pub(super) struct SpillFolder {
    dir: TempDir,
    /// Holds the lock for the folder's life.
    _lock: File,
}

impl SpillFolder {
    /// Make this process's folder under `parent`, after removing those of dead processes.
    pub(super) fn make(parent: &Path) -> Result<Self> {
        let removed = remove_dead(parent);
        if !removed.is_empty() {
            tracing::info!(folders = ?removed, "removed the spill folders of processes that died");
        }
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(parent)
            .with_context(|| format!("making a folder in {}", parent.display()))?;
        let lock = File::create(dir.path().join(LOCK)).with_context(|| format!("making {}", dir.path().display()))?;
        // A file system without locks (some network ones) fails this; the folder is then never
        // taken for dead, since no one else can take its lock either, and spilling still works.
        if let Err(e) = lock.try_lock() {
            tracing::warn!(folder = %dir.path().display(), error = %e, "the spill folder cannot be locked; if this process dies, its files stay");
        }
        Ok(Self { dir, _lock: lock })
    }

    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Remove the spill folders under `parent` whose process is gone; returns them. Best effort: a
/// folder that cannot be read or removed is left for the next try.
fn remove_dead(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(PREFIX))
        .map(|entry| entry.path())
        .filter(|folder| folder.is_dir() && is_dead(folder))
        .filter(|folder| std::fs::remove_dir_all(folder).is_ok())
        .collect()
}

fn is_dead(folder: &Path) -> bool {
    match File::open(folder.join(LOCK)) {
        // Taking the lock proves its holder is gone; it is released again as `lock` drops.
        Ok(lock) => lock.try_lock().is_ok(),
        // No lock file: a folder still being made, or one whose maker died making it.
        Err(_) => std::fs::metadata(folder)
            .and_then(|m| m.modified())
            .is_ok_and(|made| SystemTime::now().duration_since(made).unwrap_or_default() > GRACE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder as a process that died leaves it: the lock file, unlocked, and a spilled image.
    fn dead_folder(parent: &Path, name: &str) -> PathBuf {
        let folder = parent.join(name);
        std::fs::create_dir(&folder).unwrap();
        File::create(folder.join(LOCK)).unwrap();
        std::fs::write(folder.join("qrank-image-1.rgb"), [0u8; 300]).unwrap();
        folder
    }

    #[test]
    fn the_folders_of_dead_processes_are_removed_and_live_ones_kept() {
        let parent = tempfile::tempdir().unwrap();
        let dead = dead_folder(parent.path(), "qrank-spill-dead");
        // A live process's folder: its lock is held (here by this test).
        let live = dead_folder(parent.path(), "qrank-spill-live");
        let held = File::open(live.join(LOCK)).unwrap();
        held.try_lock().unwrap();
        // Something else in the same temporary folder.
        let other = dead_folder(parent.path(), "someone-else");
        // A folder just made, whose lock file is not there yet.
        let new = parent.path().join("qrank-spill-new");
        std::fs::create_dir(&new).unwrap();

        let mine = SpillFolder::make(parent.path()).unwrap();
        assert!(!dead.exists(), "a dead process's folder is removed");
        assert!(live.exists() && other.exists() && new.exists());
        assert!(mine.path().starts_with(parent.path()) && mine.path().join(LOCK).exists());

        // While this process lives, another cannot take its folder for dead.
        let another = SpillFolder::make(parent.path()).unwrap();
        assert!(mine.path().exists());
        let mine_path = mine.path().to_owned();
        drop(mine);
        assert!(!mine_path.exists(), "a folder is removed when its process drops it");
        // Once the live process lets go, the next one to make a folder removes its folder.
        drop(held);
        drop(SpillFolder::make(parent.path()).unwrap());
        assert!(!live.exists());
        assert!(another.path().exists());
    }
}
