//! One job, from its delivery to its ack. The coordinator owns the job's progress: it pulls the
//! listing in batches, keeps a bounded number of images loading or being scored, drives the
//! comparison rounds (answering from the checkpoint when a redelivered job resumes), checkpoints
//! new answers, and finally writes the result, publishes it with a confirm, and only then acks.
//! A comparing job keeps its prepared images until then, in memory or on disk
//! ([`crate::prepared`]).
//!
//! `qrank rank` runs the same coordinator with a [`Reply::Local`]: the report goes back to the
//! command line, and progress drives its bars, instead of the broker and the object store.
//!
//! Anything that goes wrong inside the job ends here as a reported failure; the handler never
//! returns `Err`, so the actor stops only when its job is done.

mod asking;
mod failure;
mod finishing;
mod loading;
mod sharing;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use engine::compare::{GroupOutcome, Stage};
use engine::image::Image;
use engine::rank::{ComparisonRecord, Ranking};
use engine::schedule::{Group, Mode};
use lapin::Acker;
use object_store::ObjectMeta;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tracing::Instrument;

use self::asking::{ask_more, compared, round_finished, save_checkpoint};
use self::failure::{again_after, give_up, model_failed, model_failing, Again, Refused};
use self::finishing::{finish, reply_locally};
use self::loading::{load_more, loading_finished, shares_groups, start};
use self::sharing::{republish_late, Sharing};
use super::inference::Task;
use super::lister::ListerMsg;
use super::scheduler::SchedulerMsg;
use super::{lookup, INFERENCE};
use crate::pipeline::{FileError, Progress, Report, Stats};
use crate::prepared::PreparedImage;
use crate::service::metrics::JobOutcome;
use crate::service::wire::JobSpec;
use crate::service::Context;

pub enum CoordinatorMsg {
    Start,
    /// Periodic: give the job up if it stopped making progress.
    Watchdog,
    /// A batch of the listing; `true` when it is the last.
    Listed(Vec<Result<ObjectMeta, FileError>>, bool),
    ListFailed(String),
    /// An image loaded (or not), with its location in the source's store.
    Loaded(object_store::path::Path, Result<Image, FileError>),
    Scored(String, Result<f64, FileError>),
    /// The next round of groups, and the job's total planned calls.
    Round(Vec<Group>, usize),
    Compared(Group, Result<GroupOutcome, String>),
    /// Another replica's answer to one of this job's shared groups, by task id.
    Answered(u64, Result<GroupOutcome, String>),
    Ranked(Result<Ranking, String>),
    /// A command-line run stopped by Ctrl-C: save the answers so far and stop.
    Interrupt,
}

pub struct Coordinator;

/// Where a finished job's answer goes.
pub enum Reply {
    /// A job from the queue: write the result, publish it, then ack the delivery.
    Broker { acker: Acker, redelivered: bool },
    /// A job from the command line: hand the report (or the failure) back, and report progress.
    Local {
        report: oneshot::Sender<Result<Report, String>>,
        progress: Arc<dyn Progress>,
    },
}

pub struct Arguments {
    pub ctx: Context,
    pub spec: JobSpec,
    pub reply: Reply,
}

pub struct State {
    ctx: Context,
    spec: JobSpec,
    reply: Option<Reply>,
    span: tracing::Span,
    started: Instant,
    last_progress: Instant,
    done: bool,
    // Loading.
    lister: Option<ActorRef<ListerMsg>>,
    listing_done: bool,
    awaiting_batch: bool,
    pending: VecDeque<ObjectMeta>,
    in_flight: usize,
    next_loader: usize,
    loading_done: bool,
    scored: Vec<(String, f64)>,
    /// Loaded images, with their locations in the source's store.
    prepared: Vec<(PreparedImage, String)>,
    errors: Vec<FileError>,
    num_listed: u64,
    num_loaded: u64,
    // Comparing.
    scheduler: Option<ActorRef<SchedulerMsg>>,
    images: Arc<Vec<PreparedImage>>,
    /// Each image's location in the source's store, in the order of `images`.
    locations: Vec<String>,
    /// Set when this job's groups go to the shared queue (`service::shared_groups`).
    sharing: Option<Sharing>,
    round: VecDeque<Group>,
    resumable: HashMap<Vec<String>, Vec<Stage>>,
    unsaved: Vec<ComparisonRecord>,
    /// When the last checkpoint was written (or the job started).
    last_saved: Instant,
    next_checkpoint_part: u32,
    num_groups: u64,
    /// Groups whose comparison failed this run, skipped.
    num_groups_failed: u64,
    /// Why the last failed group failed, for the job's failure if most of them do.
    last_group_failure: String,
    num_groups_resumed: u64,
    num_groups_planned: u64,
    num_model_calls: u64,
}

impl Actor for Coordinator {
    type Msg = CoordinatorMsg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(&self, _myself: ActorRef<CoordinatorMsg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        let redelivered = matches!(args.reply, Reply::Broker { redelivered: true, .. });
        let span = tracing::info_span!("job", job_id = %args.spec.job_id, redelivered);
        Ok(State {
            ctx: args.ctx,
            spec: args.spec,
            reply: Some(args.reply),
            span,
            started: Instant::now(),
            last_progress: Instant::now(),
            done: false,
            lister: None,
            listing_done: false,
            awaiting_batch: false,
            pending: VecDeque::new(),
            in_flight: 0,
            next_loader: 0,
            loading_done: false,
            scored: Vec::new(),
            prepared: Vec::new(),
            errors: Vec::new(),
            num_listed: 0,
            num_loaded: 0,
            scheduler: None,
            images: Arc::new(Vec::new()),
            locations: Vec::new(),
            sharing: None,
            round: VecDeque::new(),
            resumable: HashMap::new(),
            unsaved: Vec::new(),
            last_saved: Instant::now(),
            next_checkpoint_part: 0,
            num_groups: 0,
            num_groups_failed: 0,
            last_group_failure: String::new(),
            num_groups_resumed: 0,
            num_groups_planned: 0,
            num_model_calls: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        message: CoordinatorMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        if state.done {
            return Ok(());
        }
        let span = state.span.clone();
        async {
            if !matches!(message, CoordinatorMsg::Watchdog) {
                state.last_progress = Instant::now();
            }
            if let Err(e) = step(&myself, message, state).await {
                if state.done {
                    tracing::warn!(error = format!("{e:#}"), "finishing the job failed");
                } else {
                    let again = again_after(&e, state.ctx.health.alive());
                    give_up(&myself, state, format!("{e:#}"), again).await;
                }
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn post_stop(&self, _myself: ActorRef<CoordinatorMsg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        if let Some(sharing) = &state.sharing {
            state.ctx.shared_groups.unregister(sharing.key);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        // The lister and scheduler stop on their own when done; only a crash matters.
        if let SupervisionEvent::ActorFailed(_, error) = event {
            if !state.done {
                let span = state.span.clone();
                give_up(&myself, state, format!("a helper actor crashed: {error}"), Again::Once)
                    .instrument(span)
                    .await;
            }
        }
        Ok(())
    }
}

async fn step(myself: &ActorRef<CoordinatorMsg>, message: CoordinatorMsg, state: &mut State) -> Result<()> {
    match message {
        CoordinatorMsg::Start => {
            let stall = Duration::from_secs(state.ctx.config.pipeline.job_stall_timeout_secs);
            myself.send_interval(stall / 4, || CoordinatorMsg::Watchdog);
            start(myself, state).await?;
        }
        CoordinatorMsg::Watchdog => {
            let stall = Duration::from_secs(state.ctx.config.pipeline.job_stall_timeout_secs);
            if state.last_progress.elapsed() > stall {
                // A message lost with a crashed helper would otherwise hold the job forever.
                return Err(anyhow!("no progress for {} s", stall.as_secs()));
            }
            republish_late(state);
        }
        CoordinatorMsg::Interrupt => {
            save_checkpoint(state).await?;
            let answers = state.num_groups;
            let saved = if state.spec.output.is_some() { ", all saved" } else { "" };
            return reply_locally(
                myself,
                state,
                Err(format!("interrupted after {answers} answers{saved}")),
            );
        }
        CoordinatorMsg::Listed(batch, last) => {
            for item in batch {
                match item {
                    Ok(meta) => {
                        state.num_listed += 1;
                        state.pending.push_back(meta);
                    }
                    Err(e) => image_failed(state, e),
                }
            }
            let most = state.ctx.config.pipeline.max_images_per_job;
            if state.num_listed > most {
                return Err(Refused(format!(
                    "the source lists more than {most} images, the most one job may rank \
                     (pipeline.max_images_per_job): split it into several jobs, or list its keys"
                ))
                .into());
            }
            state.listing_done = last;
            state.awaiting_batch = false;
            load_more(myself, state);
            loading_finished(myself, state).await?;
        }
        CoordinatorMsg::ListFailed(reason) => return Err(anyhow!(reason)),
        CoordinatorMsg::Loaded(location, Ok(image)) => {
            state.num_loaded += 1;
            if let Some(progress) = local_progress(state) {
                progress.loaded(&image.name);
            }
            if state.ctx.compares_groups() {
                let image = if shares_groups(state) {
                    PreparedImage::unkept(image).without_pixels()
                } else {
                    let memory = state.ctx.image_memory.clone();
                    tokio::task::spawn_blocking(move || memory.keep(image)).await?
                };
                state.prepared.push((image, location.as_ref().to_owned()));
                state.in_flight -= 1;
            } else {
                let worker = lookup::<Task>(INFERENCE).ok_or_else(|| anyhow!("the inference worker is not running"))?;
                state.num_model_calls += 1;
                worker
                    .cast(Task::Score(image, myself.clone()))
                    .map_err(|_| anyhow!("the inference worker stopped"))?;
            }
            load_more(myself, state);
            loading_finished(myself, state).await?;
        }
        CoordinatorMsg::Loaded(_, Err(e)) => {
            if let Some(progress) = local_progress(state) {
                progress.loaded(&e.name);
            }
            image_failed(state, e);
            state.in_flight -= 1;
            load_more(myself, state);
            loading_finished(myself, state).await?;
        }
        CoordinatorMsg::Scored(name, score) => {
            state.in_flight -= 1;
            match score {
                Ok(score) => state.scored.push((name, score)),
                Err(e) => image_failed(state, e),
            }
            load_more(myself, state);
            loading_finished(myself, state).await?;
        }
        CoordinatorMsg::Round(groups, planned) => {
            if state.num_groups_planned == 0 {
                if let Some(progress) = local_progress(state) {
                    progress.comparisons_planned(planned);
                }
            }
            state.num_groups_planned = planned as u64;
            state.round = groups.into();
            ask_more(myself, state)?;
            round_finished(state).await?;
        }
        CoordinatorMsg::Compared(group, outcome) => compared(myself, state, group, outcome).await?,
        CoordinatorMsg::Answered(task_id, outcome) => {
            // A second answer to a task asked again is ignored.
            if let Some(group) = state.sharing.as_mut().and_then(|s| s.pending.remove(&task_id)) {
                compared(myself, state, group.group, outcome).await?;
            }
        }
        CoordinatorMsg::Ranked(ranking) => {
            let mut ranking = ranking.map_err(|e| anyhow!(e))?;
            if model_failing(state.num_groups_failed, state.num_groups, true) {
                return Err(model_failed(state).into());
            }
            if let Some(reason) = ranking.stop_reason {
                state
                    .ctx
                    .metrics
                    .jobs_stopped
                    .with_label_values(&[reason.label()])
                    .inc();
            }
            // Here rather than in the fit, so that images scored directly are marked too.
            if let Mode::Threshold { fraction } = state.spec.options.mode {
                ranking.mark_dropped(fraction);
            }
            let num_images = ranking.items.len();
            let mut errors = std::mem::take(&mut state.errors);
            errors.sort_by(|a, b| a.name.cmp(&b.name));
            let report = Report {
                model: state.ctx.comparators.primary().model_id(),
                ranking,
                errors,
                stats: Stats {
                    num_images,
                    num_model_calls: state.num_model_calls as usize,
                    num_groups_resumed: state.num_groups_resumed as usize,
                    seconds: state.started.elapsed().as_secs_f64(),
                    embedding_cache: None,
                    images_on_disk: 0,
                    precision: state.ctx.comparators.primary().precision(),
                },
            };
            finish(myself, state, report).await?;
            state.ctx.metrics.job_completed(JobOutcome::Ranked);
        }
    }
    Ok(())
}

fn image_failed(state: &mut State, error: FileError) {
    tracing::info!(image = %error.name, error_type = error.kind, "image skipped");
    state.ctx.metrics.image_errors.with_label_values(&[error.kind]).inc();
    state.errors.push(error);
}

fn scheduler(state: &State) -> Result<&ActorRef<SchedulerMsg>> {
    state.scheduler.as_ref().ok_or_else(|| anyhow!("no scheduler"))
}

/// The command line's bars, for a local job.
fn local_progress(state: &State) -> Option<&Arc<dyn Progress>> {
    match &state.reply {
        Some(Reply::Local { progress, .. }) => Some(progress),
        _ => None,
    }
}
