//! Where a comparing job keeps its prepared images between rounds: in memory while the process's
//! budget allows, and on local disk beyond it.
//!
//! A job that compares groups asks about every image again and again, round after round, so it
//! keeps them all from the moment they load until it is ranked. Prepared for Co-Instruct, an image
//! is 448 x 448 RGB, 588 KiB: a job of 20,000 images would hold 11.5 GiB, and a replica runs
//! several jobs at once. So the process's jobs share one budget (`pipeline.prepared_memory_mib`),
//! first come first served, and an image loaded past it waits in a file of its own under
//! `pipeline.spill_dir`, removed when its job drops it. Reading 588 KiB back from local disk takes
//! well under a millisecond, against the hundreds of a model call.
//!
//! A spill that fails (a full disk) keeps the image in memory over the budget, with a warning:
//! memory runs short later, if at all, where losing the image would lose it now. The files go in
//! a folder of the process's own, so that what a killed process leaves is removed by the next
//! ([`spill_folder`]).

mod spill_folder;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result};
use engine::image::Image;
use prometheus::{IntCounter, IntGauge};
use tempfile::TempPath;

use crate::config::PipelineConfig;
use crate::service::metrics::Metrics;
use spill_folder::SpillFolder;

/// The memory the process's jobs share for their prepared images, and where the rest waits.
#[derive(Debug)]
pub struct ImageMemory {
    limit_bytes: u64,
    held_bytes: AtomicU64,
    spill_dir: PathBuf,
    /// This process's folder under `spill_dir`, made at the first spill.
    folder: Mutex<Option<SpillFolder>>,
    counts: Counts,
}

/// What the metrics report of the images kept: bytes of pixels in memory and on disk, and how
/// many images were spilled.
#[derive(Debug, Clone)]
pub struct Counts {
    pub in_memory: IntGauge,
    pub on_disk: IntGauge,
    pub spilled: IntCounter,
}

impl ImageMemory {
    /// A budget of `limit_bytes`, spilling to `spill_dir`. The service refuses a spill folder
    /// it cannot write at start-up ([`check_spill_dir`]); the command line warns.
    pub fn new(limit_bytes: u64, spill_dir: &Path, counts: Counts) -> Self {
        Self {
            limit_bytes,
            held_bytes: AtomicU64::new(0),
            spill_dir: spill_dir.to_owned(),
            folder: Mutex::new(None),
            counts,
        }
    }

    /// Keep one prepared image for its job: in memory if the budget has room for its pixels,
    /// otherwise in a file. Blocking: call it off the async threads.
    pub fn keep(self: &Arc<Self>, image: Image) -> PreparedImage {
        let bytes = image.rgb.as_raw().len() as u64;
        if let Some(held) = self.reserve(bytes) {
            return PreparedImage::InMemory {
                image,
                _held: Some(held),
            };
        }
        match self.spill(&image) {
            Ok(file) => PreparedImage::OnDisk {
                name: image.name,
                content_hash: image.content_hash,
                width: image.rgb.width(),
                height: image.rgb.height(),
                file,
            },
            Err(e) => {
                tracing::warn!(image = %image.name, error = %format!("{e:#}"), "spilling an image to disk failed; keeping it in memory, over pipeline.prepared_memory_mib");
                self.counts.in_memory.add(bytes as i64);
                PreparedImage::InMemory {
                    image,
                    _held: Some(Held {
                        memory: self.clone(),
                        bytes,
                        counted: false,
                    }),
                }
            }
        }
    }

    /// The budget and spill folder of `config`, counted in `metrics`.
    pub fn from_config(config: &PipelineConfig, metrics: &Metrics) -> Self {
        let place = |p: &str| metrics.prepared_image_bytes.with_label_values(&[p]);
        let counts = Counts {
            in_memory: place("memory"),
            on_disk: place("disk"),
            spilled: metrics.prepared_images_spilled.clone(),
        };
        Self::new(
            config.prepared_memory_mib.saturating_mul(1 << 20),
            &config.spill_dir(),
            counts,
        )
    }

    fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Held> {
        self.held_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |held| {
                (held + bytes <= self.limit_bytes).then_some(held + bytes)
            })
            .ok()?;
        self.counts.in_memory.add(bytes as i64);
        Some(Held {
            memory: self.clone(),
            bytes,
            counted: true,
        })
    }

    fn spill(self: &Arc<Self>, image: &Image) -> Result<SpillFile> {
        use std::io::Write as _;
        let pixels = image.rgb.as_raw();
        let folder = self.folder()?;
        let mut file = tempfile::Builder::new()
            .prefix("qrank-image-")
            .suffix(".rgb")
            .tempfile_in(&folder)
            .with_context(|| format!("making a file in {}", folder.display()))?;
        file.write_all(pixels)
            .with_context(|| format!("writing {}", file.path().display()))?;
        self.counts.on_disk.add(pixels.len() as i64);
        self.counts.spilled.inc();
        Ok(SpillFile {
            path: file.into_temp_path(),
            bytes: pixels.len() as u64,
            memory: self.clone(),
        })
    }

    /// The path of this process's spill folder, made (and the dead ones removed) the first time.
    fn folder(&self) -> Result<PathBuf> {
        let mut folder = self.folder.lock().unwrap_or_else(|e| e.into_inner());
        let folder = match &mut *folder {
            Some(made) => made,
            none => none.insert(SpillFolder::make(&self.spill_dir)?),
        };
        Ok(folder.path().to_owned())
    }
}

/// Refuse a spill folder that no file can be made in, naming the setting.
pub fn check_spill_dir(spill_dir: &Path) -> Result<()> {
    tempfile::Builder::new()
        .prefix(".qrank-check-")
        .tempfile_in(spill_dir)
        .with_context(|| {
            format!(
                "pipeline.spill_dir {}: images past pipeline.prepared_memory_mib wait there, but no \
                 file can be made in it",
                spill_dir.display()
            )
        })
        .map(drop)
}

/// One image's share of the budget, given back when the image is dropped.
#[derive(Debug)]
pub struct Held {
    memory: Arc<ImageMemory>,
    bytes: u64,
    /// False for an image kept over the budget because its spill failed: it is in the metrics'
    /// memory figure, not in the budget.
    counted: bool,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.counted {
            self.memory.held_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        }
        self.memory.counts.in_memory.sub(self.bytes as i64);
    }
}

/// A spilled image's file, deleted when the image is dropped.
#[derive(Debug)]
pub struct SpillFile {
    path: TempPath,
    bytes: u64,
    memory: Arc<ImageMemory>,
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        self.memory.counts.on_disk.sub(self.bytes as i64);
    }
}

/// A job's prepared image, wherever it waits.
#[derive(Debug)]
pub enum PreparedImage {
    /// In memory; `_held` is its share of the budget, `None` for an image that is not kept
    /// (a shared group's, judged once) or has no pixels (a shared job's, on its coordinator).
    InMemory { image: Image, _held: Option<Held> },
    OnDisk {
        name: String,
        content_hash: u64,
        width: u32,
        height: u32,
        file: SpillFile,
    },
}

impl PreparedImage {
    /// An image outside any budget: one judged once and dropped, or one kept by name only.
    pub fn unkept(image: Image) -> Self {
        Self::InMemory { image, _held: None }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::InMemory { image, .. } => &image.name,
            Self::OnDisk { name, .. } => name,
        }
    }

    /// The image with its pixels, read back from its file if it waits on disk.
    pub fn image(&self) -> Result<Cow<'_, Image>, String> {
        match self {
            Self::InMemory { image, .. } => Ok(Cow::Borrowed(image)),
            Self::OnDisk {
                name,
                content_hash,
                width,
                height,
                file,
            } => {
                let path = file.path.display();
                let bytes = std::fs::read(&file.path)
                    .map_err(|e| format!("{name}: reading its pixels back from {path}: {e}"))?;
                let rgb = image::RgbImage::from_raw(*width, *height, bytes).ok_or_else(|| {
                    format!("{name}: its pixels in {path} are not {width} x {height} RGB: the file was changed")
                })?;
                Ok(Cow::Owned(Image {
                    name: name.clone(),
                    content_hash: *content_hash,
                    rgb,
                }))
            }
        }
    }

    /// The image without its pixels (and their memory or file): the name and hash are all a
    /// shared job's coordinator needs.
    pub fn without_pixels(self) -> Self {
        let (name, content_hash) = match self {
            Self::InMemory { image, .. } => (image.name, image.content_hash),
            Self::OnDisk { name, content_hash, .. } => (name, content_hash),
        };
        Self::unkept(Image {
            name,
            content_hash,
            rgb: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> Counts {
        Counts {
            in_memory: IntGauge::new("in_memory", "test").unwrap(),
            on_disk: IntGauge::new("on_disk", "test").unwrap(),
            spilled: IntCounter::new("spilled", "test").unwrap(),
        }
    }

    /// A budget of `limit_bytes` spilling to a fresh folder, and what it counts.
    fn budget(limit_bytes: u64) -> (tempfile::TempDir, Counts, Arc<ImageMemory>) {
        let dir = tempfile::tempdir().unwrap();
        let counts = counts();
        let memory = Arc::new(ImageMemory::new(limit_bytes, dir.path(), counts.clone()));
        (dir, counts, memory)
    }

    /// The spilled images' files under `dir`, in the process's folder.
    fn spilled_files(dir: &Path) -> usize {
        let folders = std::fs::read_dir(dir).unwrap().flatten().filter(|e| e.path().is_dir());
        folders
            .flat_map(|folder| std::fs::read_dir(folder.path()).unwrap().flatten())
            .filter(|file| file.file_name().to_string_lossy().ends_with(".rgb"))
            .count()
    }

    /// A 10 x 10 image (300 bytes of pixels) whose pixels spell out `seed`.
    fn image(name: &str, seed: u8) -> Image {
        let pixels = (0..300u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
        Image {
            name: name.into(),
            content_hash: u64::from(seed),
            rgb: image::RgbImage::from_raw(10, 10, pixels).unwrap(),
        }
    }

    #[test]
    fn images_past_the_budget_wait_on_disk_and_come_back_the_same() {
        let (dir, counts, memory) = budget(700);
        let kept: Vec<PreparedImage> = (1..=4).map(|i| memory.keep(image(&format!("{i}.png"), i))).collect();
        // Two fit in 700 bytes; the other two are files.
        assert!(matches!(kept[1], PreparedImage::InMemory { .. }));
        assert!(matches!(kept[2], PreparedImage::OnDisk { .. }));
        assert_eq!((counts.in_memory.get(), counts.on_disk.get()), (600, 600));
        assert_eq!(counts.spilled.get(), 2);
        assert_eq!(spilled_files(dir.path()), 2);
        for (i, kept) in (1..=4).zip(&kept) {
            let back = kept.image().unwrap();
            let want = image(&format!("{i}.png"), i);
            assert_eq!(
                (back.name.as_str(), back.content_hash),
                (want.name.as_str(), want.content_hash)
            );
            assert_eq!(back.rgb, want.rgb, "image {i}");
        }
        // Dropping an image gives its memory back to the next one, and deletes its file.
        drop(kept);
        assert_eq!((counts.in_memory.get(), counts.on_disk.get()), (0, 0));
        assert_eq!(spilled_files(dir.path()), 0);
        assert!(matches!(memory.keep(image("5.png", 5)), PreparedImage::InMemory { .. }));
    }

    #[test]
    fn a_lost_file_is_an_error_that_names_the_image_and_the_file() {
        let (_dir, _, memory) = budget(0);
        let kept = memory.keep(image("cat.jpg", 3));
        let PreparedImage::OnDisk { file, .. } = &kept else {
            panic!("a budget of 0 keeps nothing in memory")
        };
        std::fs::write(&file.path, b"short").unwrap();
        let e = kept.image().unwrap_err();
        assert!(
            e.starts_with("cat.jpg: its pixels in ") && e.contains("not 10 x 10 RGB"),
            "{e}"
        );
        std::fs::remove_file(&file.path).unwrap();
        let e = kept.image().unwrap_err();
        assert!(e.starts_with("cat.jpg: reading its pixels back from "), "{e}");
    }

    #[test]
    fn a_spill_that_fails_keeps_the_image_in_memory() {
        let (dir, counts, memory) = budget(0);
        drop(dir);
        let kept = memory.keep(image("cat.jpg", 3));
        assert!(matches!(kept, PreparedImage::InMemory { .. }));
        assert_eq!(kept.image().unwrap().rgb, image("cat.jpg", 3).rgb);
        assert_eq!(counts.in_memory.get(), 300, "counted in memory, over the budget");
        drop(kept);
        assert_eq!(counts.in_memory.get(), 0);
    }

    #[test]
    fn a_spill_folder_that_cannot_be_written_is_named() {
        assert!(check_spill_dir(&std::env::temp_dir()).is_ok());
        let e = check_spill_dir(Path::new("/nonexistent/qrank-spill")).unwrap_err();
        let e = format!("{e:#}");
        assert!(e.starts_with("pipeline.spill_dir /nonexistent/qrank-spill: "), "{e}");
    }

    #[test]
    fn without_pixels_keeps_the_name_and_gives_the_memory_back() {
        let (_dir, counts, memory) = budget(300);
        let (a, b) = (memory.keep(image("a.png", 1)), memory.keep(image("b.png", 2)));
        let (a, b) = (a.without_pixels(), b.without_pixels());
        assert_eq!((a.name(), b.name()), ("a.png", "b.png"));
        assert_eq!((counts.in_memory.get(), counts.on_disk.get()), (0, 0));
        assert_eq!(b.image().unwrap().content_hash, 2);
    }
}
