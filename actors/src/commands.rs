//! The subcommands: each returns the process exit code.

use std::sync::Arc;

use anyhow::{Context, Result};
use engine::compare::Comparator;
use engine::image::Limits;
use engine::job::JobOptions;
use engine::rank::{fit as fit_model, parse_comparisons, FitOptions, Prior, Ranking};
use engine::schedule::Mode;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{CompareArgs, FitArgs, RankArgs, UsageError};
use crate::exit;
use crate::output;
use crate::pipeline::{self, Progress, Report, RunOptions, Stats};
use crate::service::job_output::JobOutput;
use crate::source::Source;

/// `qrank rank SOURCE`.
pub fn rank(args: RankArgs) -> Result<u8> {
    if !(args.budget.is_finite() && args.budget > 0.0) {
        return Err(UsageError(format!(
            "--budget must be a positive number of calls per image, got {}",
            args.budget
        ))
        .into());
    }
    let mode = match (args.top_k, args.drop_worst) {
        (Some(0), _) => return Err(UsageError("--top-k must be at least 1".into()).into()),
        (Some(k), _) => Mode::TopK { k },
        (None, Some(f)) if !(f > 0.0 && f < 1.0) => {
            return Err(UsageError(format!("--drop-worst must be a fraction between 0 and 1, got {f}")).into())
        }
        (None, Some(fraction)) => Mode::Threshold { fraction },
        (None, None) => Mode::Full,
    };
    if !(args.max_megapixels.is_finite() && args.max_megapixels > 0.0) {
        return Err(UsageError(format!(
            "--max-megapixels must be a positive number, got {}",
            args.max_megapixels
        ))
        .into());
    }
    if args.max_file_mib == 0 {
        return Err(UsageError("--max-file-mib must be at least 1".into()).into());
    }
    let limits = Limits {
        max_pixels: (args.max_megapixels * 1e6).round() as u64,
        max_bytes: args.max_file_mib.saturating_mul(1 << 20),
        ..Limits::default()
    };
    output::check_writable(&args.output)?;
    let source = Source::open(&args.source)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let checkpoint = match &args.resume {
        Some(dir) => Some(runtime.block_on(open_resume_folder(dir))?),
        None => None,
    };
    let load = || {
        crate::models::load(
            &args.model.model,
            &args.model.device,
            args.model.precision,
            args.embedding_cache_mib,
            warn,
        )
    };
    let comparators = match &args.model.model {
        crate::models::ModelSpec::CoInstruct(source) => announced(source, load)?,
        _ => load()?,
    };
    if !comparators.primary().scores_directly() {
        if let Err(e) = crate::prepared::check_spill_dir(&std::env::temp_dir()) {
            warn(&format!(
                "the temporary folder cannot be written ({:#}); images past --image-memory-mib stay in memory",
                e.root_cause()
            ));
        }
    }
    let options = RunOptions {
        recursive: args.recursive,
        concurrency: args.concurrency,
        image_memory_mib: args.image_memory_mib,
        limits,
        job: JobOptions {
            budget_calls_per_image: args.budget,
            seed: args.seed,
            mode,
            ..JobOptions::default()
        },
        criterion: args.model.criterion(),
        checkpoint,
    };
    let progress = Arc::new(Bars::new());
    let run = runtime.block_on(pipeline::run(
        &source,
        comparators,
        &options,
        progress.clone(),
        ctrl_c(),
    ));
    progress.finish();
    let report = match run {
        Err(e) => match e.downcast_ref::<pipeline::Interrupted>() {
            Some(why) => {
                let next = match &args.resume {
                    Some(dir) => format!("the same command with --resume {dir} takes the run up from there"),
                    None => "with --resume DIR a run keeps its answers, to be taken up later".to_owned(),
                };
                eprintln!("qrank: {why}; {next}");
                return Ok(exit::INTERRUPTED);
            }
            None => return Err(e),
        },
        Ok(report) => report,
    };
    for error in &report.errors {
        let hint = match error.kind {
            "over_limit" if error.reason.contains("pixel count") => " (--max-megapixels raises the limit)",
            "over_limit" if error.reason.contains("file size") => " (--max-file-mib raises the limit)",
            _ => "",
        };
        eprintln!("qrank: skipped {}{hint}", error.reason);
    }
    output::write(&report, &args.output)?;
    Ok(match (report.ranking.items.is_empty(), report.errors.is_empty()) {
        (true, true) => {
            eprintln!("qrank: no images found under {}", args.source);
            exit::FAILED
        }
        (true, false) => exit::FAILED,
        (false, true) => exit::OK,
        (false, false) => exit::SKIPPED_SOME,
    })
}

/// The first Ctrl-C. The run then saves what it has; a second one ends the process at once.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handler could be installed: Ctrl-C keeps its default, ending the process.
        return std::future::pending().await;
    }
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
}

/// The `--resume` folder or prefix, checked before the model loads: a folder that cannot be
/// written would otherwise fail the run at its first checkpoint.
async fn open_resume_folder(dir: &str) -> Result<JobOutput> {
    let output = JobOutput::open(dir).map_err(|e| UsageError(format!("--resume {dir}: {e:#}")))?;
    output
        .check_writable()
        .await
        .map_err(|e| UsageError(format!("--resume {dir}: {e:#}")))?;
    Ok(output)
}

/// `qrank compare IMAGE...`: the model's choice probabilities, or its answer in words.
pub fn compare(args: CompareArgs) -> Result<u8> {
    let limits = Limits::default();
    let images = args
        .images
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| UsageError(format!("{name}: {e}")))?;
            Ok(engine::image::decode(&name, &bytes, &limits)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let crate::models::ModelSpec::CoInstruct(source) = &args.model.model else {
        return Err(UsageError(format!(
            "qrank compare needs a comparison model (a Co-Instruct checkpoint), not {}",
            args.model.model
        ))
        .into());
    };
    let model = announced(source, || {
        let device = crate::models::resolve_devices(&args.model.device, warn)?[0];
        let checkpoint = crate::models::locate(source, &[device], args.model.precision)?;
        crate::models::load_coinstruct(
            &checkpoint,
            device,
            args.model.precision,
            crate::models::DEFAULT_EMBEDDING_CACHE_MIB,
            warn,
        )
    })?;
    let prepared: Vec<_> = images.into_iter().map(|image| model.prepare(image)).collect();
    let members: Vec<_> = prepared.iter().collect();
    if let Some(question) = &args.model.question {
        let answer = model.answer(&members, question, args.max_tokens)?;
        if args.json {
            println!("{}", serde_json::json!({ "question": question, "answer": answer }));
        } else {
            println!("{answer}");
        }
        return Ok(exit::OK);
    }
    let outcome = model.compare(&members, &args.model.criterion())?;
    let stage1 = &outcome.stages[0];
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        println!("P(best)  image");
        for (&slot, &p) in stage1.slots.iter().zip(&stage1.probs) {
            println!("{p:7.4}  {}", prepared[usize::from(slot)].name);
        }
        let mut order: Vec<u8> = outcome
            .stages
            .iter()
            .map(|stage| {
                let best = stage
                    .probs
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(k, _)| k);
                stage.slots[best]
            })
            .collect();
        let last = (0..prepared.len() as u8).find(|slot| !order.contains(slot));
        order.extend(last);
        let names: Vec<&str> = order
            .iter()
            .map(|&slot| prepared[usize::from(slot)].name.as_str())
            .collect();
        println!("model's order, best first: {}", names.join(" > "));
    }
    Ok(exit::OK)
}

/// Loads Co-Instruct from `source` between two lines on stderr. A first run downloads the
/// checkpoint (16 GB for the real one; the hub client draws a bar per file on a terminal), and
/// loading it takes a minute or more on a CPU: without them the command would sit silent.
fn announced<T>(source: &str, load: impl FnOnce() -> Result<T>) -> Result<T> {
    eprintln!("qrank: loading Co-Instruct from {source}");
    let started = std::time::Instant::now();
    let loaded = load()?;
    eprintln!("qrank: Co-Instruct loaded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(loaded)
}

/// A warning on the terminal, beside the progress bars.
pub(crate) fn warn(warning: &str) {
    eprintln!("qrank: warning: {warning}");
}

/// A file's text, or, for a `--resume` folder, its parts (`checkpoint/NNNNNN.jsonl`) one
/// after another.
fn read_saved_comparisons(path: &std::path::Path) -> Result<String> {
    let read =
        |file: &std::path::Path| std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()));
    if !path.is_dir() {
        return read(path);
    }
    let nested = path.join("checkpoint");
    let folder = if nested.is_dir() { nested } else { path.to_owned() };
    let mut parts: Vec<_> = std::fs::read_dir(&folder)
        .with_context(|| format!("reading {}", folder.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|file| file.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    if parts.is_empty() {
        return Err(UsageError(format!(
            "{} holds no saved comparisons (.jsonl files, or a checkpoint/ folder of them)",
            path.display()
        ))
        .into());
    }
    parts.sort();
    let mut text = String::new();
    for part in &parts {
        text.push_str(&read(part)?);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(text)
}

/// `qrank fit FILE`.
pub fn fit(args: FitArgs) -> Result<u8> {
    let text = read_saved_comparisons(&args.file)?;
    let set = parse_comparisons(&text).with_context(|| format!("parsing {}", args.file.display()))?;
    if set.origins.len() > 1 {
        warn(&format!(
            "{} holds answers of {} models or questions, fitted together as one: {}",
            args.file.display(),
            set.origins.len(),
            set.origins.join("; ")
        ));
    }
    if args.prior_precision.is_some_and(|p| !(p >= 0.0 && p.is_finite())) {
        return Err(UsageError("--prior-precision must be a number >= 0".into()).into());
    }
    // A reference file's alpha is choix's own regularisation: honour it as choix does, unless the
    // user asks for our Gaussian prior.
    let prior = match (args.prior_precision, set.alpha) {
        (Some(precision), _) => Prior::Gaussian { precision },
        (None, Some(alpha)) => Prior::ChoixAlpha { alpha },
        (None, None) => FitOptions::default().prior,
    };
    let options = FitOptions {
        prior,
        fit_slot_bias: args.slot_bias && set.has_slots,
        tolerance: args.tolerance,
        ..FitOptions::default()
    };
    let fitted = fit_model(&set.observations, &options);
    if !fitted.converged {
        warn(&format!("the fit did not converge in {} iterations", fitted.iterations));
    }
    let report = Report {
        model: "saved-comparisons".into(),
        ranking: Ranking::from_fit(&set.names, &fitted),
        errors: Vec::new(),
        stats: Stats {
            num_images: set.names.len(),
            ..Stats::default()
        },
    };
    output::write(&report, &args.output)?;
    Ok(exit::OK)
}

/// Progress bars on stderr; indicatif hides them when stderr is not a terminal.
struct Bars {
    loading: ProgressBar,
    comparing: ProgressBar,
}

impl Bars {
    fn new() -> Self {
        let loading = ProgressBar::new_spinner();
        loading.set_style(
            ProgressStyle::with_template("{spinner} loading images: {pos} [{elapsed}]").expect("valid template"),
        );
        let comparing = ProgressBar::hidden();
        Self { loading, comparing }
    }

    fn finish(&self) {
        self.loading.finish_and_clear();
        self.comparing.finish_and_clear();
    }
}

impl Progress for Bars {
    fn loaded(&self, _name: &str) {
        self.loading.inc(1);
    }

    fn comparisons_planned(&self, total: usize) {
        self.loading.finish_and_clear();
        self.comparing.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        self.comparing.set_length(total as u64);
        self.comparing.set_style(
            ProgressStyle::with_template("comparing {bar:40} {pos}/{len} groups [{elapsed}<{eta}]")
                .expect("valid template"),
        );
    }

    fn compared(&self) {
        self.comparing.inc(1);
    }

    fn resumed(&self, reused: usize, ignored: usize) {
        // Printed with the bar out of the way; `println` would print nothing without a terminal.
        self.loading.suspend(|| {
            if reused > 0 {
                eprintln!("qrank: resuming: {reused} answers saved earlier; their groups are not asked again");
            }
            if ignored > 0 {
                warn(&format!(
                    "{ignored} answers saved earlier are from another model or question, and are not reused"
                ));
            }
        });
    }
}
