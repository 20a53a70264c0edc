//! The wire format (see `protos/README.md`): turning a delivery into a checked [`JobSpec`], or a
//! [`Poison`] reason for the dead-letter exchange, and a finished ranking into a `RankResult`
//! and its JSON copy.

use engine::compare::Criterion;
use engine::job::JobOptions;
use engine::schedule::Mode;
use lapin::BasicProperties;
use prost::Message;
use protos::v1::{self, RankJob, RankResult};

use crate::config::PipelineConfig;
use crate::pipeline::Report;
use crate::source::Source;

use super::job_output::JobOutput;

/// Why a message is poison. The label is the `x-qrank-error-type` header and a metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Poison {
    #[error("unexpected message type {found:?}, want {want}")]
    Type { found: String, want: &'static str },
    #[error("unexpected content-type {0:?}, want application/x-protobuf")]
    ContentType(String),
    #[error("undecodable RankJob: {0}")]
    Decode(String),
    #[error("invalid RankJob: {0}")]
    Invalid(String),
}

impl Poison {
    /// Every [`Poison::label`], for the metric's series to start at 0.
    pub const LABELS: [&'static str; 4] = ["type", "content_type", "decode", "invalid"];

    pub fn label(&self) -> &'static str {
        match self {
            Poison::Type { .. } => "type",
            Poison::ContentType(_) => "content_type",
            Poison::Decode(_) => "decode",
            Poison::Invalid(_) => "invalid",
        }
    }
}

/// A message's `criterion` and `custom_question` as the comparator's [`Criterion`].
pub fn criterion_from_wire(criterion: i32, custom_question: String) -> Result<Criterion, String> {
    Ok(match v1::Criterion::try_from(criterion) {
        Ok(v1::Criterion::Overall) => Criterion::Overall,
        Ok(v1::Criterion::Sharpness) => Criterion::Sharpness,
        Ok(v1::Criterion::Noise) => Criterion::Noise,
        Ok(v1::Criterion::Exposure) => Criterion::Exposure,
        Ok(v1::Criterion::Colour) => Criterion::Colour,
        Ok(v1::Criterion::Custom) if !custom_question.trim().is_empty() => Criterion::Custom(custom_question),
        Ok(v1::Criterion::Custom) => return Err("CRITERION_CUSTOM needs a custom_question".into()),
        Err(_) => return Err(format!("unknown criterion {criterion}")),
    })
}

/// The inverse of [`criterion_from_wire`]: the `criterion` and `custom_question` fields.
pub fn criterion_to_wire(criterion: &Criterion) -> (i32, String) {
    let (kind, question) = match criterion {
        Criterion::Overall => (v1::Criterion::Overall, String::new()),
        Criterion::Sharpness => (v1::Criterion::Sharpness, String::new()),
        Criterion::Noise => (v1::Criterion::Noise, String::new()),
        Criterion::Exposure => (v1::Criterion::Exposure, String::new()),
        Criterion::Colour => (v1::Criterion::Colour, String::new()),
        Criterion::Custom(question) => (v1::Criterion::Custom, question.clone()),
    };
    (kind as i32, question)
}

/// Which of the ranked images the result lists.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selection {
    All,
    TopK(usize),
    AtLeast(f64),
    /// All; the ranking marks the worst fraction dropped.
    DropWorst(f64),
}

/// A checked job, ready to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub job_id: String,
    pub source: Source,
    pub keys: Vec<String>,
    pub recursive: bool,
    pub criterion: Criterion,
    pub options: JobOptions,
    pub selection: Selection,
    /// Where the result and checkpoints go. A job from the command line writes only its
    /// checkpoint there, and only with `--resume`.
    pub output: Option<JobOutput>,
    pub reply_routing_key: String,
    pub progress_routing_key: Option<String>,
}

/// A delivery's `type` and `content-type` properties, where set, must name the message `want`ed
/// and protobuf.
pub fn check_properties(properties: &BasicProperties, want: &'static str) -> Result<(), Poison> {
    if let Some(kind) = properties.kind().as_ref().map(|k| k.as_str()) {
        if kind != want {
            return Err(Poison::Type {
                found: kind.to_owned(),
                want,
            });
        }
    }
    if let Some(content_type) = properties.content_type().as_ref().map(|c| c.as_str()) {
        if content_type != protos::CONTENT_TYPE {
            return Err(Poison::ContentType(content_type.to_owned()));
        }
    }
    Ok(())
}

/// Decode and check a job message.
pub fn decode_job(
    properties: &BasicProperties,
    body: &[u8],
    defaults: &PipelineConfig,
    default_reply_routing_key: &str,
) -> Result<JobSpec, Poison> {
    check_properties(properties, protos::message_type::RANK_JOB)?;
    let job = RankJob::decode(body).map_err(|e| Poison::Decode(e.to_string()))?;
    check_job(job, defaults, default_reply_routing_key).map_err(Poison::Invalid)
}

fn check_job(job: RankJob, defaults: &PipelineConfig, default_reply: &str) -> Result<JobSpec, String> {
    let id_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if job.job_id.is_empty() || job.job_id.len() > 128 || !job.job_id.chars().all(id_ok) {
        return Err(format!(
            "job_id {:?} must be 1 to 128 characters from [A-Za-z0-9._-]",
            job.job_id
        ));
    }
    if job.source.is_empty() {
        return Err("source is empty".into());
    }
    let source = Source::open(&job.source).map_err(|e| format!("source: {e:#}"))?;
    if job.output_prefix.is_empty() {
        return Err("output_prefix is empty".into());
    }
    let output = JobOutput::open(&job.output_prefix).map_err(|e| format!("output_prefix: {e:#}"))?;
    if let Some(key) = job
        .keys
        .iter()
        .find(|k| k.is_empty() || k.starts_with('/') || k.contains(".."))
    {
        return Err(format!("key {key:?} must be a relative path without `..`"));
    }
    check_no_stray_mode_field(&job)?;
    let criterion = criterion_from_wire(job.criterion, job.custom_question)?;
    let budget = match job.budget_calls_per_image {
        0.0 => defaults.default_budget_calls_per_image,
        b if b.is_finite() && b > 0.0 => b,
        b => return Err(format!("budget_calls_per_image must be positive, got {b}")),
    };
    let selection = match v1::Mode::try_from(job.mode) {
        Ok(v1::Mode::Full) => Selection::All,
        Ok(v1::Mode::TopK) if job.top_k > 0 => Selection::TopK(job.top_k as usize),
        Ok(v1::Mode::TopK) => return Err("MODE_TOP_K needs top_k > 0".into()),
        Ok(v1::Mode::Threshold) if job.threshold.is_finite() => Selection::AtLeast(job.threshold),
        Ok(v1::Mode::Threshold) => return Err("MODE_THRESHOLD needs a finite threshold".into()),
        Ok(v1::Mode::DropWorst) if job.drop_worst_fraction > 0.0 && job.drop_worst_fraction < 1.0 => {
            Selection::DropWorst(job.drop_worst_fraction)
        }
        Ok(v1::Mode::DropWorst) => {
            return Err(format!(
                "MODE_DROP_WORST needs drop_worst_fraction strictly between 0 and 1, got {}",
                job.drop_worst_fraction
            ))
        }
        Err(_) => return Err(format!("unknown mode {}", job.mode)),
    };
    let routing_key_ok = |key: &str| key.len() <= 255;
    if !routing_key_ok(&job.reply_routing_key) || !routing_key_ok(&job.progress_routing_key) {
        return Err("routing keys must be at most 255 bytes".into());
    }
    Ok(JobSpec {
        job_id: job.job_id,
        source,
        keys: job.keys,
        recursive: job.recursive,
        criterion,
        options: JobOptions {
            budget_calls_per_image: budget,
            seed: if job.seed == 0 { defaults.default_seed } else { job.seed },
            // Top-k and drop-worst jobs spend their comparisons near their cut; score-threshold
            // jobs rank fully and filter, since no fraction of the images is known beforehand.
            mode: match selection {
                Selection::TopK(k) => Mode::TopK { k },
                Selection::DropWorst(fraction) => Mode::Threshold { fraction },
                Selection::All | Selection::AtLeast(_) => Mode::Full,
            },
            stop_tolerance: defaults.stop_tolerance,
            ..JobOptions::default()
        },
        selection,
        output: Some(output),
        reply_routing_key: if job.reply_routing_key.is_empty() {
            default_reply.to_owned()
        } else {
            job.reply_routing_key
        },
        progress_routing_key: (!job.progress_routing_key.is_empty()).then_some(job.progress_routing_key),
    })
}

/// A field of another mode than the job's is a client's mistake, most likely a forgotten
/// `mode`: ignoring it would run, say, a full ranking at full cost where the best 10 were meant.
fn check_no_stray_mode_field(job: &RankJob) -> Result<(), String> {
    let Ok(job_mode) = v1::Mode::try_from(job.mode) else {
        return Ok(()); // an unknown mode is reported where the mode is read
    };
    let fields = [
        ("top_k", job.top_k != 0, v1::Mode::TopK),
        ("threshold", job.threshold != 0.0, v1::Mode::Threshold),
        (
            "drop_worst_fraction",
            job.drop_worst_fraction != 0.0,
            v1::Mode::DropWorst,
        ),
    ];
    match fields.into_iter().find(|&(_, set, mode)| set && mode != job_mode) {
        Some((field, _, mode)) => Err(format!(
            "{field} is set, but it belongs to {} and the job's mode is {}",
            mode.as_str_name(),
            job_mode.as_str_name()
        )),
        None => Ok(()),
    }
}

/// The result of a finished job.
pub fn ranked_result(spec: &JobSpec, report: &Report, num_groups: u64) -> RankResult {
    let mut items: Vec<v1::RankedImage> = report
        .ranking
        .items
        .iter()
        .map(|item| v1::RankedImage {
            uri: item.name.clone(),
            score: item.score,
            std_error: item.std_error,
            rank: item.rank,
            connected: item.connected,
            p_top_k: item.p_top_k,
            dropped: item.dropped.unwrap_or(false),
            p_dropped: item.p_dropped,
        })
        .collect();
    match spec.selection {
        Selection::All | Selection::DropWorst(_) => {}
        Selection::TopK(k) => items.truncate(k),
        Selection::AtLeast(threshold) => items.retain(|item| item.score >= threshold),
    }
    RankResult {
        job_id: spec.job_id.clone(),
        items,
        errors: report
            .errors
            .iter()
            .map(|e| v1::ImageError {
                uri: e.name.clone(),
                kind: e.kind.to_owned(),
                reason: e.reason.clone(),
            })
            .collect(),
        stats: Some(v1::RunStats {
            num_images: report.stats.num_images as u64,
            num_groups,
            num_model_calls: report.stats.num_model_calls as u64,
            seconds: report.stats.seconds,
            num_groups_resumed: report.stats.num_groups_resumed as u64,
        }),
        model_id: report.model.clone(),
        output_uri: spec.output.as_ref().map(JobOutput::result_uri).unwrap_or_default(),
        failure: String::new(),
        stop_reason: report
            .ranking
            .stop_reason
            .map(|reason| reason.label().to_owned())
            .unwrap_or_default(),
    }
}

/// The result of a job that could not run at all.
pub fn failed_result(spec: &JobSpec, model_id: String, failure: String) -> RankResult {
    RankResult {
        job_id: spec.job_id.clone(),
        model_id,
        output_uri: spec.output.as_ref().map(JobOutput::result_uri).unwrap_or_default(),
        failure,
        ..RankResult::default()
    }
}

/// The JSON copy of a result: the protobuf fields under the same names.
pub fn result_json(result: &RankResult) -> serde_json::Value {
    let stats = result.stats.unwrap_or_default();
    serde_json::json!({
        "job_id": result.job_id,
        "model_id": result.model_id,
        "output_uri": result.output_uri,
        "failure": result.failure,
        "stop_reason": result.stop_reason,
        "items": result.items.iter().map(|item| serde_json::json!({
            "uri": item.uri,
            "score": item.score,
            "std_error": item.std_error,
            "rank": item.rank,
            "connected": item.connected,
            "p_top_k": item.p_top_k,
            "dropped": item.dropped,
            "p_dropped": item.p_dropped,
        })).collect::<Vec<_>>(),
        "errors": result.errors.iter().map(|e| serde_json::json!({
            "uri": e.uri,
            "kind": e.kind,
            "reason": e.reason,
        })).collect::<Vec<_>>(),
        "stats": {
            "num_images": stats.num_images,
            "num_groups": stats.num_groups,
            "num_model_calls": stats.num_model_calls,
            "seconds": stats.seconds,
            "num_groups_resumed": stats.num_groups_resumed,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_poison_label_is_listed() {
        let all = [
            Poison::Type {
                found: "x".into(),
                want: "qrank.v1.RankJob",
            },
            Poison::ContentType("x".into()),
            Poison::Decode("x".into()),
            Poison::Invalid("x".into()),
        ];
        for poison in &all {
            // A new kind of poison fails to compile here: add it to `all` and to `LABELS`.
            match poison {
                Poison::Type { .. } | Poison::ContentType(_) | Poison::Decode(_) | Poison::Invalid(_) => {}
            }
        }
        assert_eq!(all.map(|p| p.label()), Poison::LABELS);
    }

    fn decode(job: &RankJob, kind: Option<&str>) -> Result<JobSpec, Poison> {
        let mut properties = BasicProperties::default();
        if let Some(kind) = kind {
            properties = properties.with_type(kind.into());
        }
        decode_job(
            &properties,
            &job.encode_to_vec(),
            &PipelineConfig::default(),
            "qrank.results",
        )
    }

    fn valid_job(dir: &std::path::Path) -> RankJob {
        RankJob {
            job_id: "batch-42".into(),
            source: dir.display().to_string(),
            output_prefix: format!("file://{}/out/", dir.display()),
            ..RankJob::default()
        }
    }

    #[test]
    fn a_valid_job_gets_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let spec = decode(&valid_job(dir.path()), Some("qrank.v1.RankJob")).unwrap();
        assert_eq!(spec.reply_routing_key, "qrank.results");
        assert_eq!(spec.options.budget_calls_per_image, 3.0);
        assert_eq!(spec.selection, Selection::All);
    }

    #[test]
    fn poison_is_labelled() {
        let dir = tempfile::tempdir().unwrap();
        let job = valid_job(dir.path());
        assert_eq!(decode(&job, Some("other")).unwrap_err().label(), "type");
        let garbage = decode_job(
            &BasicProperties::default(),
            b"\xff\xff\xff",
            &PipelineConfig::default(),
            "r",
        );
        assert_eq!(garbage.unwrap_err().label(), "decode");
        let no_id = RankJob {
            job_id: String::new(),
            ..job.clone()
        };
        assert_eq!(decode(&no_id, None).unwrap_err().label(), "invalid");
        let top_zero = RankJob {
            mode: v1::Mode::TopK as i32,
            ..job
        };
        assert!(decode(&top_zero, None).unwrap_err().to_string().contains("top_k"));
        let forgotten_mode = RankJob {
            top_k: 10,
            ..valid_job(dir.path())
        };
        let error = decode(&forgotten_mode, None).unwrap_err();
        assert_eq!(error.label(), "invalid");
        assert_eq!(
            error.to_string(),
            "invalid RankJob: top_k is set, but it belongs to MODE_TOP_K and the job's mode is MODE_FULL"
        );
        let crossed = RankJob {
            mode: v1::Mode::TopK as i32,
            top_k: 10,
            drop_worst_fraction: 0.1,
            ..valid_job(dir.path())
        };
        assert!(decode(&crossed, None)
            .unwrap_err()
            .to_string()
            .contains("drop_worst_fraction is set"));
        for fraction in [0.0, 1.0, -0.1, f64::NAN] {
            let bad_drop = RankJob {
                mode: v1::Mode::DropWorst as i32,
                drop_worst_fraction: fraction,
                ..valid_job(dir.path())
            };
            let error = decode(&bad_drop, None).unwrap_err();
            assert_eq!(error.label(), "invalid");
            assert!(error.to_string().contains("drop_worst_fraction"), "{error}");
        }
    }

    /// A ranked image with no cut probability or mark: `score = -rank`.
    fn ranked(rank: u32) -> engine::rank::RankedItem {
        engine::rank::RankedItem {
            rank,
            name: format!("img{rank}.jpg"),
            score: -f64::from(rank),
            std_error: 0.5,
            connected: true,
            p_top_k: None,
            dropped: None,
            p_dropped: None,
        }
    }

    /// A report of a comparison model's ranking.
    fn report_of(ranking: engine::rank::Ranking) -> Report {
        Report {
            model: "q-future/co-instruct".into(),
            ranking,
            errors: Vec::new(),
            stats: Default::default(),
        }
    }

    #[test]
    fn a_drop_worst_job_compares_near_its_cut_and_lists_every_image_with_its_mark() {
        use engine::rank::{RankedItem, Ranking};
        let dir = tempfile::tempdir().unwrap();
        let job = RankJob {
            mode: v1::Mode::DropWorst as i32,
            drop_worst_fraction: 0.3,
            ..valid_job(dir.path())
        };
        let spec = decode(&job, None).unwrap();
        assert_eq!(spec.options.mode, Mode::Threshold { fraction: 0.3 });
        let item = |rank: u32| RankedItem {
            p_dropped: Some(f64::from(rank) / 10.0),
            ..ranked(rank)
        };
        let mut ranking = Ranking {
            items: (1..=5).map(item).collect(),
            slot_bias: Vec::new(),
            stop_reason: None,
        };
        ranking.mark_dropped(0.3);
        let result = ranked_result(&spec, &report_of(ranking), 5);
        let dropped: Vec<bool> = result.items.iter().map(|i| i.dropped).collect();
        assert_eq!(dropped, [false, false, false, true, true], "every image, with its mark");
        assert_eq!(result.items[4].p_dropped, Some(0.5));
        let json = result_json(&result);
        assert_eq!(json["items"][3]["dropped"], true);
        assert_eq!(json["items"][2]["dropped"], false);
        assert_eq!(json["items"][4]["p_dropped"], 0.5);
    }

    #[test]
    fn a_top_k_result_carries_the_cut_probabilities_and_the_stop_reason() {
        use engine::rank::{RankedItem, Ranking, StopReason};
        let dir = tempfile::tempdir().unwrap();
        let job = RankJob {
            mode: v1::Mode::TopK as i32,
            top_k: 2,
            ..valid_job(dir.path())
        };
        let spec = decode(&job, None).unwrap();
        let item = |rank: u32, p: f64| RankedItem {
            p_top_k: Some(p),
            ..ranked(rank)
        };
        let report = report_of(Ranking {
            items: vec![item(1, 0.99), item(2, 0.7), item(3, 0.3)],
            slot_bias: Vec::new(),
            stop_reason: Some(StopReason::Settled),
        });
        let result = ranked_result(&spec, &report, 3);
        assert_eq!(result.stop_reason, "settled");
        let p: Vec<Option<f64>> = result.items.iter().map(|i| i.p_top_k).collect();
        assert_eq!(p, [Some(0.99), Some(0.7)], "the best top_k, each with its probability");
        let json = result_json(&result);
        assert_eq!(json["stop_reason"], "settled");
        assert_eq!(json["items"][1]["p_top_k"], 0.7);

        // A job scored directly has neither.
        let direct = report_of(Ranking {
            items: vec![ranked(1)],
            slot_bias: Vec::new(),
            stop_reason: None,
        });
        let result = ranked_result(&spec, &direct, 0);
        assert_eq!(result.stop_reason, "");
        assert_eq!(result.items[0].p_top_k, None);
        assert!(result_json(&result)["items"][0]["p_top_k"].is_null());
    }

    #[test]
    fn stop_reason_labels_are_the_serde_names() {
        use engine::rank::StopReason;
        for reason in [StopReason::Budget, StopReason::Stable, StopReason::Settled] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.label(), "{reason:?}");
        }
    }
}
