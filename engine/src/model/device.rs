//! Which devices run the model: the user's device list (`--device`, `model.device`) parsed into
//! [`DeviceKind`]s, with `auto` and `cuda` resolved against the GPUs the driver can see.
//!
//! Why a list: a machine with several GPUs runs one copy of the model on each, and a process
//! that loaded only the first would leave the rest idle while the pod holds them.

use std::fmt;

use super::error::{Context, ModelError};

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal; needs the `cuda` feature.
    Cuda(usize),
}

impl DeviceKind {
    /// The candle device: the CPU, or a CUDA context on the GPU (which fails without the `cuda`
    /// feature, or for an ordinal the driver does not have).
    pub(crate) fn open(self) -> Result<candle_core::Device, ModelError> {
        match self {
            DeviceKind::Cpu => Ok(candle_core::Device::Cpu),
            DeviceKind::Cuda(ordinal) => {
                candle_core::Device::new_cuda(ordinal).ctx(|| format!("opening CUDA device {ordinal}"))
            }
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceKind::Cpu => f.write_str("cpu"),
            DeviceKind::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// The devices the user asked for (`--device`, `model.device`), before they are matched to the
/// GPUs there are:
///
/// - `auto`: every GPU the CUDA driver sees, or the CPU when there is none (or the binary was
///   built without CUDA);
/// - `cpu`;
/// - `cuda`: every GPU the driver sees, and an error if it sees none;
/// - `cuda:N`, or several separated by commas (`cuda:0,cuda:2`).
///
/// Parsing checks only the spelling, so a GPU machine's configuration can be checked anywhere;
/// [`DeviceSpec::resolve`] checks it against the GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum DeviceSpec {
    #[default]
    Auto,
    Cpu,
    AllGpus,
    /// GPU ordinals, in the order given, none twice.
    Gpus(Vec<usize>),
}

impl std::str::FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(spec: &str) -> Result<Self, ModelError> {
        match spec.trim() {
            "" | "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::AllGpus),
            list => {
                let mut ordinals = Vec::new();
                for name in list.split(',').map(str::trim) {
                    let ordinal = name
                        .strip_prefix("cuda:")
                        .and_then(|n| n.parse::<usize>().ok())
                        .ok_or_else(|| {
                            const EXPECTED: &str = "expected auto, cpu, cuda, or cuda:N (several separated by commas)";
                            let reason = if list.contains(',') {
                                format!("{name:?} is not a device: {EXPECTED}")
                            } else {
                                EXPECTED.to_owned()
                            };
                            device_error(spec, reason)
                        })?;
                    if ordinals.contains(&ordinal) {
                        return Err(device_error(spec, format!("cuda:{ordinal} is listed twice")));
                    }
                    ordinals.push(ordinal);
                }
                Ok(Self::Gpus(ordinals))
            }
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = ModelError;

    fn try_from(spec: String) -> Result<Self, ModelError> {
        spec.parse()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::AllGpus => f.write_str("cuda"),
            Self::Gpus(ordinals) => {
                let names: Vec<String> = ordinals.iter().map(|&n| DeviceKind::Cuda(n).to_string()).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl DeviceSpec {
    /// The devices to load the model on, given how many GPUs the driver sees ([`visible_gpus`],
    /// passed in so that the rules can be tested without a GPU).
    pub fn resolve(&self, visible_gpus: Result<usize, String>) -> Result<Vec<DeviceKind>, ModelError> {
        let invalid = |reason: String| device_error(&self.to_string(), reason);
        let all_gpus = |visible: Result<usize, String>| match visible {
            Ok(0) => Err(invalid("the CUDA driver sees no GPU".into())),
            Ok(n) => Ok((0..n).map(DeviceKind::Cuda).collect()),
            Err(reason) => Err(invalid(reason)),
        };
        match self {
            Self::Auto => Ok(all_gpus(visible_gpus).unwrap_or_else(|_| vec![DeviceKind::Cpu])),
            Self::Cpu => Ok(vec![DeviceKind::Cpu]),
            Self::AllGpus => all_gpus(visible_gpus),
            Self::Gpus(ordinals) => {
                let visible = visible_gpus.map_err(invalid)?;
                if let Some(missing) = ordinals.iter().find(|&&n| n >= visible) {
                    return Err(invalid(format!(
                        "the CUDA driver sees {visible} GPU(s), numbered from cuda:0, so there is no cuda:{missing}"
                    )));
                }
                Ok(ordinals.iter().map(|&n| DeviceKind::Cuda(n)).collect())
            }
        }
    }
}

fn device_error(spec: &str, reason: String) -> ModelError {
    ModelError::Device {
        spec: spec.to_owned(),
        reason,
    }
}

/// How many GPUs the CUDA driver sees, or why it cannot say (no driver, or a binary built
/// without the `cuda` feature). `CUDA_VISIBLE_DEVICES` applies, as it does to every CUDA program.
pub fn visible_gpus() -> Result<usize, String> {
    #[cfg(feature = "cuda")]
    {
        candle_core::cuda_backend::cudarc::driver::CudaContext::device_count()
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| format!("the CUDA driver cannot count its GPUs: {e}"))
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("this qrank was built without CUDA (build it with --features cuda)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(spec: &str, visible: Result<usize, &str>) -> Result<Vec<DeviceKind>, String> {
        spec.parse::<DeviceSpec>()
            .and_then(|spec| spec.resolve(visible.map_err(str::to_owned)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn auto_takes_every_gpu_and_falls_back_to_the_cpu() {
        assert_eq!(
            resolve("auto", Ok(2)),
            Ok(vec![DeviceKind::Cuda(0), DeviceKind::Cuda(1)])
        );
        assert_eq!(resolve("", Ok(1)), Ok(vec![DeviceKind::Cuda(0)]));
        assert_eq!(resolve("auto", Ok(0)), Ok(vec![DeviceKind::Cpu]));
        assert_eq!(resolve("auto", Err("built without CUDA")), Ok(vec![DeviceKind::Cpu]));
    }

    #[test]
    fn cuda_takes_every_gpu_or_says_why_there_is_none() {
        assert_eq!(resolve(" cuda ", Ok(3)).unwrap().len(), 3);
        let err = resolve("cuda", Ok(0)).unwrap_err();
        assert!(err.contains("device \"cuda\"") && err.contains("sees no GPU"), "{err}");
        let err = resolve("cuda", Err("this qrank was built without CUDA")).unwrap_err();
        assert!(err.contains("built without CUDA"), "{err}");
    }

    #[test]
    fn a_list_names_the_gpus_in_its_order() {
        assert_eq!(resolve("cpu", Ok(4)), Ok(vec![DeviceKind::Cpu]));
        assert_eq!(
            resolve("cuda:2, cuda:0", Ok(4)),
            Ok(vec![DeviceKind::Cuda(2), DeviceKind::Cuda(0)])
        );
        assert_eq!(
            "cuda:2, cuda:0".parse::<DeviceSpec>().unwrap().to_string(),
            "cuda:2,cuda:0"
        );
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        for (spec, visible, expected) in [
            ("gpu0", Ok(1), "expected auto, cpu, cuda, or cuda:N"),
            ("cuda:0,cpu", Ok(1), "\"cpu\" is not a device"),
            ("cuda:x", Ok(1), "expected auto, cpu, cuda, or cuda:N"),
            ("cuda:1,cuda:1", Ok(2), "cuda:1 is listed twice"),
            (
                "cuda:2",
                Ok(2),
                "sees 2 GPU(s), numbered from cuda:0, so there is no cuda:2",
            ),
            ("cuda:0", Err("built without CUDA"), "built without CUDA"),
        ] {
            let err = resolve(spec, visible).unwrap_err();
            assert!(err.contains(expected), "{spec}: {err}");
            assert!(err.contains(&format!("device {spec:?}")), "{spec}: {err}");
        }
    }
}
