//! Which quality model judges the images, and loading it.
//!
//! A model is named on the command line or in the service config: `brisque` and `niqe` are
//! built in; anything else is a Co-Instruct checkpoint, as a Hugging Face hub id
//! (`q-future/co-instruct`, optionally `@revision`) or a local folder.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use engine::classical::{Brisque, Niqe};
use engine::compare::Comparator;
use engine::model::{
    Checkpoint, CoInstruct, DeviceKind, DeviceSpec, LoadOptions, Precision, WeightCounts,
    DEFAULT_EMBEDDING_CACHE_BYTES, ROOM_BESIDE_WEIGHTS,
};

/// A model name as the user writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    Brisque,
    Niqe,
    /// A Co-Instruct checkpoint: a hub id or a folder.
    CoInstruct(String),
}

impl FromStr for ModelSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" => Err("the model name is empty".into()),
            name if name.eq_ignore_ascii_case("brisque") => Ok(Self::Brisque),
            name if name.eq_ignore_ascii_case("niqe") => Ok(Self::Niqe),
            name if name.contains('/') || std::path::Path::new(name).is_dir() => Ok(Self::CoInstruct(name.to_owned())),
            name => Err(format!(
                "unknown model {name:?}: expected brisque, niqe, a Hugging Face hub id such as \
                 q-future/co-instruct, or a checkpoint folder"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ModelSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Brisque => f.write_str("brisque"),
            Self::Niqe => f.write_str("niqe"),
            Self::CoInstruct(source) => f.write_str(source),
        }
    }
}

/// The default of `--embedding-cache-mib` and `model.embedding_cache_mib`: the engine's.
pub const DEFAULT_EMBEDDING_CACHE_MIB: usize = DEFAULT_EMBEDDING_CACHE_BYTES >> 20;

/// What the embedding cache is for and how to size it, for the CLI's help and the config docs.
pub const EMBEDDING_CACHE_HELP: &str = "An image compared again takes its 65 language-model tokens \
     from this cache instead of the vision tower, which is half of a call's time on a GPU. Each \
     image takes 0.5 MiB in bf16 (the GPU default) and 1 MiB in f32 (the CPU default). The cache \
     helps when it holds every image still in play: a round visits them all, so one that holds \
     half of them loses most before their next call (about one image in eight is found). Give it \
     N x 0.5 MiB for batches of N images on a GPU, where there is memory to spare.";

/// What `--device` and `model.device` accept, for the CLI's help and the config docs.
pub const DEVICE_HELP: &str = "Where Co-Instruct runs: auto (every GPU the CUDA driver sees, else \
     the CPU; a GPU after the first that cannot take the model is left out with a warning), cpu, \
     cuda (every GPU, and an error if there is none), or cuda:N, several separated by commas. \
     Each GPU holds a copy of the model and takes groups from one queue. BRISQUE and NIQE always \
     run on the CPU.";

/// What `--precision` and `model.precision` accept, for the CLI's help and the config docs.
pub const PRECISION_HELP: &str = "Precision of Co-Instruct's weights: auto (bf16 on a GPU; on the \
     CPU f32, or q8 when the memory available cannot hold f32 with 3 GB to spare, and an error \
     when it cannot hold q8 either), f32, bf16, f16, \
     or q8: the language model's linear layers in 8-bit blocks and the rest in f32, for the CPU \
     only. The real checkpoint takes 33 GB in f32 and 11 GB in q8, whose calls are faster where \
     the CPU has VNNI or dot products (ARM); its logits stay within 0.1 of the reference's on the \
     golden checkpoint.";

/// The model loaded once per device. The inference worker gives each copy threads of its own;
/// what is the same on every device (the model's id, preparing an image, whether it scores
/// single images) is asked of the first.
#[derive(Clone)]
pub struct Comparators {
    copies: Arc<[OnDevice]>,
}

/// One copy of the model and the device it runs on.
pub struct OnDevice {
    /// `cpu` or `cuda:N`: the `device` label of the inference metrics.
    pub device: String,
    pub comparator: Arc<dyn Comparator>,
}

impl Comparators {
    /// One copy on the CPU.
    pub fn on_cpu(comparator: Arc<dyn Comparator>) -> Self {
        Self::new(vec![OnDevice {
            device: DeviceKind::Cpu.to_string(),
            comparator,
        }])
    }

    /// # Panics
    /// On an empty list: there is always at least one device.
    pub fn new(copies: Vec<OnDevice>) -> Self {
        assert!(!copies.is_empty(), "a model runs on at least one device");
        Self { copies: copies.into() }
    }

    /// The first copy, for what does not depend on the device.
    pub fn primary(&self) -> &Arc<dyn Comparator> {
        &self.copies[0].comparator
    }

    pub fn on_devices(&self) -> &[OnDevice] {
        &self.copies
    }

    /// The devices, for logs: `cuda:0, cuda:1`.
    pub fn device_names(&self) -> String {
        let names: Vec<&str> = self.copies.iter().map(|c| c.device.as_str()).collect();
        names.join(", ")
    }
}

/// Load the comparator `spec` names. A Co-Instruct checkpoint may be downloaded first; it is
/// loaded once on each device that `device` names ([`DEVICE_HELP`]), in `precision`
/// ([`PRECISION_HELP`]), each copy keeping up to `embedding_cache_mib` MiB of image tokens.
/// `warn` hears why `auto` found no GPU, or could not load on one of them.
pub fn load(
    spec: &ModelSpec,
    device: &DeviceSpec,
    precision: Precision,
    embedding_cache_mib: usize,
    warn: impl Fn(&str),
) -> Result<Comparators> {
    Ok(match spec {
        ModelSpec::Brisque => Comparators::on_cpu(Arc::new(Brisque::default())),
        ModelSpec::Niqe => Comparators::on_cpu(Arc::new(Niqe::default())),
        ModelSpec::CoInstruct(source) => {
            let devices = resolve_devices(device, &warn)?;
            let checkpoint = locate(source, &devices, precision)?;
            let strict = *device != DeviceSpec::Auto;
            load_copies(&devices, strict, &warn, |device| {
                Ok(Arc::new(load_coinstruct(
                    &checkpoint,
                    device,
                    precision,
                    embedding_cache_mib,
                    &warn,
                )?))
            })?
        }
    })
}

/// A copy of the model on each of `devices`, loaded one after another (the first may download
/// the checkpoint). Devices the user named (`strict`) must all load; with `auto`, a GPU after
/// the first that cannot take the model (another program holds its memory) is left out with a
/// warning rather than stopping the run.
fn load_copies(
    devices: &[DeviceKind],
    strict: bool,
    warn: impl Fn(&str),
    load: impl Fn(DeviceKind) -> Result<Arc<dyn Comparator>>,
) -> Result<Comparators> {
    let mut copies = Vec::with_capacity(devices.len());
    for (index, &device) in devices.iter().enumerate() {
        match load(device) {
            Ok(comparator) => copies.push(OnDevice {
                device: device.to_string(),
                comparator,
            }),
            Err(e) if !strict && index > 0 => {
                warn(&format!("leaving {device} out: {e:#}"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Comparators::new(copies))
}

/// The devices a device setting names. When `auto` falls back to the CPU, `warn` hears why:
/// a GPU machine whose driver is missing would otherwise run a 7 B model on the CPU unnoticed.
pub fn resolve_devices(device: &DeviceSpec, warn: impl Fn(&str)) -> Result<Vec<DeviceKind>> {
    resolve_with(device, engine::model::visible_gpus(), warn)
}

/// [`resolve_devices`], given what the driver reports.
fn resolve_with(device: &DeviceSpec, visible: Result<usize, String>, warn: impl Fn(&str)) -> Result<Vec<DeviceKind>> {
    let devices = device.resolve(visible.clone())?;
    if *device == DeviceSpec::Auto && devices == [DeviceKind::Cpu] {
        let reason = visible.err().unwrap_or_else(|| "the CUDA driver sees none".into());
        warn(&format!(
            "Co-Instruct runs on the CPU, seconds to minutes a group; no GPU: {reason}"
        ));
    }
    Ok(devices)
}

/// The checkpoint `source` names, downloaded if need be, once for every device it is then
/// counted and loaded on; a precision one of `devices` cannot take (q8 on a GPU) is refused
/// before anything is downloaded.
pub fn locate(source: &str, devices: &[DeviceKind], precision: Precision) -> Result<Checkpoint> {
    for &device in devices {
        precision
            .on(device)
            .with_context(|| format!("loading Co-Instruct from {source} on {device} in {precision}"))?;
    }
    Checkpoint::locate(source).with_context(|| format!("loading Co-Instruct from {source}"))
}

/// The precision to load `checkpoint` in on `device`: on the CPU, `auto` is decided by the
/// memory available ([`auto_on_the_cpu`]).
fn precision_for(
    checkpoint: &Checkpoint,
    device: DeviceKind,
    precision: Precision,
    warn: impl Fn(&str),
) -> Result<Precision> {
    if precision != Precision::Auto || device != DeviceKind::Cpu {
        return Ok(precision);
    }
    let Some(available) = available_memory() else {
        return Ok(precision);
    };
    let source = checkpoint.source();
    let counts = WeightCounts::of(checkpoint).with_context(|| format!("reading the weights of {source}"))?;
    auto_on_the_cpu(&counts, available, warn)
}

/// `auto` on the CPU for weights `counts` and `available` bytes of memory: left as `auto`, which
/// loads in f32, where f32 fits ([`Precision::for_memory`]); else q8, and `warn` hears the
/// figures: a laptop would otherwise swap or be killed partway through loading 33 GB. Where q8
/// does not fit either, an error that says so: q8 would swap or be killed while loading.
/// Asking for q8 by name still tries.
fn auto_on_the_cpu(counts: &WeightCounts, available: u64, warn: impl Fn(&str)) -> Result<Precision> {
    let chosen = Precision::Auto.for_memory(DeviceKind::Cpu, counts, Some(available));
    if chosen != Precision::Q8 {
        return Ok(chosen);
    }
    let gb = |bytes: u64| bytes as f64 / 1e9;
    let (f32_bytes, q8_bytes) = (counts.bytes_in(Precision::F32), counts.bytes_in(Precision::Q8));
    if !counts.fit_in(Precision::Q8, available) {
        anyhow::bail!(
            "Co-Instruct takes {:.1} GB in f32 and {:.1} GB in q8, the least it takes on a CPU, and \
             {:.1} GB is available with {:.1} GB to spare: free memory or raise the memory limit, \
             or ask for q8 by name (--precision q8, or the service's model.precision) to try anyway",
            gb(f32_bytes),
            gb(q8_bytes),
            gb(available),
            gb(ROOM_BESIDE_WEIGHTS),
        );
    }
    warn(&format!(
        "Co-Instruct takes {:.1} GB in f32 and {:.1} GB is available: loading it in q8, {:.1} GB \
         (--precision f32 to insist)",
        gb(f32_bytes),
        gb(available),
        gb(q8_bytes),
    ));
    Ok(Precision::Q8)
}

/// The memory this process may still take, in bytes: the system's `MemAvailable`, or less where
/// a cgroup (a container's memory limit) leaves less. `None` where neither can be read.
fn available_memory() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max").or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    let used = read("/sys/fs/cgroup/memory.current").or_else(|| read("/sys/fs/cgroup/memory/memory.usage_in_bytes"));
    memory_left(read("/proc/meminfo").as_deref(), limit.as_deref(), used.as_deref())
}

/// [`available_memory`] from the files' texts.
fn memory_left(meminfo: Option<&str>, cgroup_limit: Option<&str>, cgroup_used: Option<&str>) -> Option<u64> {
    let system = meminfo.and_then(|text| {
        let kib = text.lines().find_map(|line| line.strip_prefix("MemAvailable:"))?;
        Some(kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
    });
    // "max" (no limit) does not parse, and neither does a missing file.
    let cgroup = match (cgroup_limit, cgroup_used) {
        (Some(limit), Some(used)) => {
            let (limit, used) = (limit.trim().parse::<u64>().ok(), used.trim().parse::<u64>().ok());
            limit.zip(used).map(|(limit, used)| limit.saturating_sub(used))
        }
        _ => None,
    };
    match (system, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Load a Co-Instruct checkpoint on `device`, in `precision`, `auto` resolved first
/// ([`precision_for`]; `warn` hears why it chose q8).
pub fn load_coinstruct(
    checkpoint: &Checkpoint,
    device: DeviceKind,
    precision: Precision,
    embedding_cache_mib: usize,
    warn: impl Fn(&str),
) -> Result<CoInstruct> {
    let precision = precision_for(checkpoint, device, precision, warn)?;
    let options = load_options(device, precision, embedding_cache_mib)?;
    let source = checkpoint.source();
    CoInstruct::from_checkpoint(checkpoint, &options)
        .with_context(|| format!("loading Co-Instruct from {source} on {device} in {precision}"))
}

/// The load options for a device, a precision and a cache size.
fn load_options(device: DeviceKind, precision: Precision, embedding_cache_mib: usize) -> Result<LoadOptions> {
    let embedding_cache_bytes = embedding_cache_mib.checked_mul(1 << 20).with_context(|| {
        format!("an embedding cache of {embedding_cache_mib} MiB is more than this machine can address")
    })?;
    Ok(LoadOptions {
        device,
        precision,
        embedding_cache_bytes,
        ..LoadOptions::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_options_take_the_device_precision_and_cache_size() {
        let options = load_options(DeviceKind::Cuda(1), Precision::Auto, 2048).unwrap();
        assert_eq!(options.device, DeviceKind::Cuda(1));
        assert_eq!(options.embedding_cache_bytes, 2048 << 20);
        let options = load_options(DeviceKind::Cpu, Precision::Q8, 0).unwrap();
        assert_eq!((options.embedding_cache_bytes, options.precision), (0, Precision::Q8));
        let err = load_options(DeviceKind::Cpu, Precision::Auto, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(err.contains("embedding cache"), "{err}");
    }

    #[test]
    #[cfg(not(feature = "cuda"))]
    fn auto_says_why_it_runs_on_the_cpu() {
        // This test binary is built without CUDA, so `auto` finds no GPU.
        let heard = std::cell::RefCell::new(Vec::new());
        let devices = resolve_devices(&DeviceSpec::Auto, |w| heard.borrow_mut().push(w.to_owned())).unwrap();
        assert_eq!(devices, [DeviceKind::Cpu]);
        let heard = heard.into_inner();
        assert!(heard.len() == 1 && heard[0].contains("built without CUDA"), "{heard:?}");
        // Asking for the CPU is not worth a warning; asking for a GPU that is not there fails.
        let quiet = resolve_devices(&DeviceSpec::Cpu, |w| panic!("warned: {w}")).unwrap();
        assert_eq!(quiet, [DeviceKind::Cpu]);
        let err = format!("{:#}", resolve_devices(&DeviceSpec::Gpus(vec![0]), |_| {}).unwrap_err());
        assert!(
            err.contains("device \"cuda:0\"") && err.contains("built without CUDA"),
            "{err}"
        );
    }

    #[test]
    fn auto_says_why_when_the_driver_sees_no_gpu() {
        let heard = std::cell::RefCell::new(Vec::new());
        let devices = resolve_with(&DeviceSpec::Auto, Ok(0), |w| heard.borrow_mut().push(w.to_owned())).unwrap();
        assert_eq!(devices, [DeviceKind::Cpu]);
        assert_eq!(
            heard.into_inner(),
            ["Co-Instruct runs on the CPU, seconds to minutes a group; no GPU: the CUDA driver sees none"]
        );
        let gpus = resolve_with(&DeviceSpec::Auto, Ok(2), |w| panic!("warned: {w}")).unwrap();
        assert_eq!(gpus, [DeviceKind::Cuda(0), DeviceKind::Cuda(1)]);
    }

    /// A loader that fails on `cuda:1`, with a comparator that needs no checkpoint.
    fn fails_on_cuda_1(device: DeviceKind) -> Result<Arc<dyn Comparator>> {
        match device {
            DeviceKind::Cuda(1) => Err(anyhow::anyhow!("opening CUDA device 1: out of memory")),
            _ => Ok(Arc::new(Brisque::default())),
        }
    }

    #[test]
    fn auto_leaves_out_a_gpu_that_cannot_take_the_model() {
        let devices = [DeviceKind::Cuda(0), DeviceKind::Cuda(1), DeviceKind::Cuda(2)];
        let heard = std::cell::RefCell::new(Vec::new());
        let copies = load_copies(
            &devices,
            false,
            |w| heard.borrow_mut().push(w.to_owned()),
            fails_on_cuda_1,
        )
        .unwrap();
        assert_eq!(copies.device_names(), "cuda:0, cuda:2");
        assert_eq!(
            heard.into_inner(),
            ["leaving cuda:1 out: opening CUDA device 1: out of memory"]
        );
    }

    #[test]
    fn named_devices_and_the_first_must_all_load() {
        let devices = [DeviceKind::Cuda(0), DeviceKind::Cuda(1)];
        let Err(named) = load_copies(&devices, true, |_| {}, fails_on_cuda_1) else {
            panic!("a named device that cannot load must fail the run");
        };
        assert!(format!("{named:#}").contains("out of memory"), "{named:#}");
        let first = load_copies(
            &[DeviceKind::Cuda(1), DeviceKind::Cuda(0)],
            false,
            |_| {},
            fails_on_cuda_1,
        );
        assert!(
            first.is_err(),
            "auto must not hide a model that loads nowhere it was tried first"
        );
    }

    #[test]
    fn memory_left_is_the_least_of_the_system_and_the_container() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   16000000 kB\n";
        let gib16 = 16_000_000 * 1024;
        assert_eq!(memory_left(Some(meminfo), None, None), Some(gib16));
        assert_eq!(memory_left(Some(meminfo), Some("max\n"), Some("5000\n")), Some(gib16));
        let limit = Some("8000000000\n");
        assert_eq!(
            memory_left(Some(meminfo), limit, Some("1000000000\n")),
            Some(7_000_000_000)
        );
        assert_eq!(memory_left(None, limit, Some("1000000000")), Some(7_000_000_000));
        assert_eq!(memory_left(None, None, None), None);
        assert_eq!(memory_left(Some("MemTotal: 5 kB\n"), None, None), None);
    }

    /// `auto` on the CPU, for the real checkpoint's weights: f32 on a 40 GB machine, q8 with the
    /// figures on a 24 GB one, and on a 12 GB one an error, since q8 does not fit either.
    #[test]
    fn auto_takes_f32_then_q8_then_says_neither_fits() {
        const GB: u64 = 1_000_000_000;
        let co_instruct = WeightCounts {
            quantized_in_q8: 7_516_192_768,
            other: 683_000_000,
        };
        let quiet = |w: &str| panic!("warned: {w}");
        // Left as `auto`, which the engine loads in f32 on the CPU.
        assert_eq!(auto_on_the_cpu(&co_instruct, 40 * GB, quiet).unwrap(), Precision::Auto);

        let warnings = std::cell::RefCell::new(Vec::new());
        let heard = |w: &str| warnings.borrow_mut().push(w.to_owned());
        assert_eq!(auto_on_the_cpu(&co_instruct, 24 * GB, heard).unwrap(), Precision::Q8);
        let warnings = warnings.into_inner();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("Co-Instruct takes 32.8 GB in f32 and 24.0 GB is available: loading it in q8"),
            "{}",
            warnings[0]
        );

        let err = auto_on_the_cpu(&co_instruct, 12 * GB, quiet).unwrap_err().to_string();
        assert!(
            err.contains("32.8 GB in f32")
                && err.contains("GB in q8, the least it takes on a CPU")
                && err.contains("12.0 GB is available")
                && err.contains("--precision q8"),
            "{err}"
        );
    }

    /// Asked-for precisions and GPUs are left alone without reading the weights (which here are
    /// not safetensors at all); `auto` on the CPU reads them, and says which checkpoint it could
    /// not read.
    #[test]
    fn only_auto_on_the_cpu_looks_at_the_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("model.safetensors"), "not safetensors").unwrap();
        let source = dir.path().to_str().unwrap();
        let checkpoint = Checkpoint::locate(source).unwrap();
        let quiet = |w: &str| panic!("warned: {w}");
        assert_eq!(
            precision_for(&checkpoint, DeviceKind::Cpu, Precision::F32, quiet).unwrap(),
            Precision::F32
        );
        assert_eq!(
            precision_for(&checkpoint, DeviceKind::Cuda(0), Precision::Auto, quiet).unwrap(),
            Precision::Auto
        );
        if available_memory().is_some() {
            let err = format!(
                "{:#}",
                precision_for(&checkpoint, DeviceKind::Cpu, Precision::Auto, quiet).unwrap_err()
            );
            assert!(err.contains(&format!("reading the weights of {source}")), "{err}");
        }
    }

    /// q8 on a GPU is refused before the checkpoint is looked for, so before any download.
    #[test]
    fn a_precision_the_device_cannot_take_is_refused_before_locating() {
        let err = format!(
            "{:#}",
            locate("/nowhere", &[DeviceKind::Cpu, DeviceKind::Cuda(0)], Precision::Q8).unwrap_err()
        );
        assert!(err.contains("on cuda:0 in q8"), "{err}");
        let missing = format!(
            "{:#}",
            locate("/nowhere", &[DeviceKind::Cpu], Precision::Q8).unwrap_err()
        );
        assert!(missing.contains("/nowhere"), "{missing}");
    }

    #[test]
    fn the_default_cache_is_the_engines() {
        assert_eq!(
            DEFAULT_EMBEDDING_CACHE_MIB << 20,
            LoadOptions::default().embedding_cache_bytes
        );
    }
}
