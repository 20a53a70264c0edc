//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::compare::Criterion;

#[derive(Debug, Parser)]
#[command(
    name = "qrank",
    version,
    about = "Rank batches of images by visual quality",
    long_about = "Rank batches of images by visual quality.\n\n\
        qrank judges images with a quality model and turns the judgements into one global ranking, \
        with a score, a standard error and a rank for every image. The built-in model (BRISQUE) \
        needs no GPU, no download and no network.",
    after_help = "Exit codes:\n  0   every image was ranked\n  1   the run failed\n  \
        2   some files were skipped; each is listed with its reason\n  64  usage or configuration error\n  \
        130 stopped by Ctrl-C (a comparing run saves its answers first, with --resume)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Rank every image under a folder or object-store prefix.
    #[command(
        after_help = "Examples:\n  qrank rank ./photos\n  qrank rank s3://bucket/batch-42/ --format json --out ranking.json\n\n\
        S3-compatible stores are configured from the environment: AWS_ACCESS_KEY_ID, \
        AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT (e.g. http://127.0.0.1:8333) and \
        AWS_ALLOW_HTTP=true for a plain-HTTP endpoint. gs:// reads GOOGLE_* and az:// AZURE_* variables."
    )]
    Rank(RankArgs),
    /// Fit a ranking from saved comparisons, without any model.
    #[command(
        after_help = "FILE is either qrank's JSONL (one {\"items\": [...], \"stages\": [...]} per line, \
        the format the service checkpoints), a folder of such files (a `qrank rank --resume` folder), or a \
        reference file with kind, n_items, alpha and comparisons. The output has one row per item, as for \
        `qrank rank`."
    )]
    Fit(FitArgs),
    /// Measure a ranking against human opinion scores: SRCC, KRCC, PLCC, and the best and worst
    /// fraction's precision.
    #[command(
        after_help = "RANKING is what `qrank rank` wrote (CSV or JSON), or a service job's result.json. TRUTH holds the human scores as \
        image-quality datasets ship them: a CSV with a header (KonIQ-10k, KADID-10k), whose image-name \
        column is by default the first of name, image_name, image, dist_img, filename, file, path, and \
        whose score column the first of MOS, score, DMOS, MOS_zscore, rating (any case); or lines of a \
        name and a score with no header, split by commas, semicolons, tabs or spaces (TID2013, PIPAL). \
        Columns may be named by number, from 1. Higher scores are better unless --lower-is-better. \
        Names match whole, or by their last path parts (photos/1234.jpg matches 1234.jpg). Another \
        qrank ranking serves as the truth too.\n\nExample:\n  qrank rank ./koniq --format json --out \
        ranking.json\n  qrank eval ranking.json --truth koniq10k_scores_and_distributions.csv"
    )]
    Eval(EvalArgs),
    /// Run the service: take RankJob messages from AMQP, publish RankResults.
    #[command(
        after_help = "Every key of the configuration file can be overridden by an environment variable \
        QRANK_<SECTION>__<KEY>, e.g. QRANK_AMQP__URL=amqps://user:pass@broker/vhost or \
        QRANK_SHUTDOWN__GRACE_PERIOD_SECS=60. Object stores are configured as for `qrank rank`. \
        A bad configuration exits with code 64 before any port is bound."
    )]
    Serve(ServeArgs),
    /// Ask the model about 2 to 4 images: the probability that each is best, or, with
    /// --question, its answer in words.
    #[command(
        after_help = "Examples:\n  qrank compare a.jpg b.jpg --model q-future/co-instruct\n  \
        qrank compare a.jpg b.jpg c.jpg --model ./co-instruct --question \"Which image is sharper, and why?\""
    )]
    Compare(CompareArgs),
}

pub use crate::models::ModelSpec;

/// What the comparator is asked about each group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CriterionName {
    Overall,
    Sharpness,
    Noise,
    Exposure,
    Colour,
}

/// The quality model and what it is asked.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The quality model: `brisque` (built in, the default), `niqe` (built in), or a Co-Instruct
    /// checkpoint as a Hugging Face hub id (`q-future/co-instruct`) or a local folder.
    #[arg(long, default_value = "brisque", value_name = "MODEL")]
    pub model: ModelSpec,
    /// Where Co-Instruct runs: auto, cpu, cuda, or cuda:N[,cuda:M...].
    #[arg(long, env = "QRANK_DEVICE", default_value = "auto", value_name = "DEVICE",
          long_help = format!("{} `qrank compare` uses the first. GPUs need a binary built with --features cuda.",
                              crate::models::DEVICE_HELP))]
    pub device: engine::model::DeviceSpec,
    /// Precision of Co-Instruct's weights: auto, f32, bf16, f16, or q8 (8-bit, CPU only).
    #[arg(long, env = "QRANK_PRECISION", default_value = "auto", value_name = "PRECISION",
          long_help = crate::models::PRECISION_HELP)]
    pub precision: engine::model::Precision,
    /// What to compare, for models that compare (Co-Instruct); BRISQUE and NIQE judge overall quality.
    #[arg(long, value_enum, default_value_t = CriterionName::Overall)]
    pub criterion: CriterionName,
    /// A custom question whose answer picks one image, instead of --criterion.
    #[arg(long, value_name = "TEXT")]
    pub question: Option<String>,
}

impl ModelArgs {
    pub fn criterion(&self) -> Criterion {
        match (&self.question, self.criterion) {
            (Some(question), _) => Criterion::Custom(question.clone()),
            (None, CriterionName::Overall) => Criterion::Overall,
            (None, CriterionName::Sharpness) => Criterion::Sharpness,
            (None, CriterionName::Noise) => Criterion::Noise,
            (None, CriterionName::Exposure) => Criterion::Exposure,
            (None, CriterionName::Colour) => Criterion::Colour,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
    Json,
    /// A page to open in a browser: each image beside its rank and score (images from a local
    /// folder are shown, linked from their files).
    Html,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Write the ranking to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RankArgs {
    /// A folder, or a URL: file://, s3://bucket/prefix/, gs://bucket/prefix/, az://container/prefix/.
    pub source: String,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Comparator calls per image, for models that compare rather than score. A run stops
    /// earlier once a round no longer moves the ranking.
    #[arg(long, default_value_t = 3.0, value_name = "N")]
    pub budget: f64,
    /// Only the best K images matter: spend the comparisons near the cut and report P(in top K).
    #[arg(long, value_name = "K", conflicts_with = "drop_worst")]
    pub top_k: Option<usize>,
    /// Only the worst FRACTION (0..1) matters, to be dropped: spend the comparisons near the cut
    /// and report P(below the cut).
    #[arg(long, value_name = "FRACTION")]
    pub drop_worst: Option<f64>,
    /// Descend into sub-folders (sub-prefixes).
    #[arg(long)]
    pub recursive: bool,
    /// Seed of the comparison plan, so a run can be repeated exactly.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Images fetched and decoded at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Largest image accepted, in megapixels.
    #[arg(
        long,
        default_value_t = 64.0,
        value_name = "MP",
        long_help = "Largest image accepted, in megapixels (width x height), read from the header before \
                       decoding; larger ones are skipped as over_limit. A 100 MP camera needs 102. Each image \
                       being decoded takes 3 MB a megapixel, --concurrency of them at once."
    )]
    pub max_megapixels: f64,
    /// Largest image file accepted, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub max_file_mib: u64,
    /// Memory for the image tokens of a Co-Instruct model, in MiB.
    #[arg(long, default_value_t = crate::models::DEFAULT_EMBEDDING_CACHE_MIB, value_name = "MIB",
          long_help = format!("Memory for the image tokens of a Co-Instruct model, in MiB. {}",
                              crate::models::EMBEDDING_CACHE_HELP))]
    pub embedding_cache_mib: usize,
    /// Memory for the images a comparing model keeps between rounds, in MiB.
    #[arg(
        long,
        default_value_t = 2048,
        value_name = "MIB",
        long_help = "Memory for the images a comparing model (Co-Instruct) keeps between rounds, in MiB: \
                       588 KiB an image, so the default holds about 3,500. Past it, images wait in files in \
                       the system's temporary folder (TMPDIR), deleted as the run ends."
    )]
    pub image_memory_mib: u64,
    /// Save every answer under DIR, and take up a run stopped part-way from it.
    #[arg(
        long,
        value_name = "DIR",
        long_help = "Save every answer of a comparing model (Co-Instruct) under DIR (a folder or an object-store \
                       URL; the answers go in DIR/checkpoint/), and take up a run stopped part-way from it: the \
                       same command again asks the model only about the groups not yet answered. Ctrl-C saves every \
                       answer before the run stops; a crash or a closed laptop loses only those of the last few \
                       seconds. A finished run given a larger --budget asks only for the calls the budget adds. \
                       Answers from another model or question are not reused. `qrank fit DIR` re-fits them."
    )]
    pub resume: Option<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct FitArgs {
    /// Saved comparisons: qrank JSONL, a `qrank rank --resume` folder (every answer in it, of
    /// whichever model), or a reference-fit JSON file.
    pub file: PathBuf,
    /// Precision of the Gaussian prior on scores (default 0.25). A reference file's `alpha` is
    /// otherwise applied as choix's ILSR regularisation, so its fit is reproduced exactly.
    #[arg(long, value_name = "LAMBDA")]
    pub prior_precision: Option<f64>,
    /// Fit a bias for each slot (position shown), jointly with the scores. Ignored for reference
    /// files, which list the winner first.
    #[arg(long)]
    pub slot_bias: bool,
    /// Convergence tolerance: the largest change of any score in the last iteration.
    #[arg(long, default_value_t = 1e-8)]
    pub tolerance: f64,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A ranking from `qrank rank` (CSV or JSON), or a service job's result.json.
    pub ranking: PathBuf,
    /// The human scores: a CSV with an image-name column and a score column, or name and score
    /// lines with no header.
    #[arg(long, value_name = "FILE")]
    pub truth: PathBuf,
    /// The truth's image-name column, if not one of the usual names.
    #[arg(long, value_name = "COLUMN")]
    pub truth_name: Option<String>,
    /// The truth's score column, if not one of the usual names.
    #[arg(long, value_name = "COLUMN")]
    pub truth_score: Option<String>,
    /// Lower truth scores are better (DMOS in LIVE or CSIQ).
    #[arg(long)]
    pub lower_is_better: bool,
    /// The best and worst fraction whose precision is reported.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    pub fraction: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Two to four image files, in the order they are shown to the model.
    #[arg(num_args = 2..=4, required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Longest answer to an open question, in tokens.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_tokens: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file (TOML); without it, defaults and QRANK_* variables apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check the configuration and exit: 0 when valid, 64 when not. Binds nothing.
    #[arg(long)]
    pub check_config: bool,
}

/// A mistake in how qrank was called, reported with exit code 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
