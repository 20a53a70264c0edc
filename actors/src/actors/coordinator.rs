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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use engine::compare::{GroupOutcome, Stage};
use engine::image::Image;
use engine::job::Job;
use engine::rank::{ComparisonRecord, Ranking};
use engine::schedule::{Group, Mode};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Acker;
use lapin::BasicProperties;
use object_store::ObjectMeta;
use prost::Message;
use protos::v1::{self, RankProgress};
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::oneshot;
use tracing::Instrument;

use super::inference::{CompareReply, Task};
use super::lister::{self, Lister, ListerMsg};
use super::loader::Load;
use super::publisher::{publish_confirmed, Outgoing, PublisherMsg};
use super::ranker::RankerMsg;
use super::scheduler::{self, Scheduler, SchedulerMsg};
use super::{loader_name, lookup, INFERENCE, PUBLISHER, RANKER};
use crate::config::PipelineConfig;
use crate::pipeline::{FileError, Progress, Report, Stats};
use crate::prepared::PreparedImage;
use crate::service::shared_groups;
use crate::service::wire::{failed_result, ranked_result, JobSpec};
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

/// A job whose groups go to the shared queue: its key in correlation ids, and the groups
/// published and not yet answered, by task id.
struct Sharing {
    key: u64,
    next_task: u64,
    pending: HashMap<u64, PendingGroup>,
}

struct PendingGroup {
    group: Group,
    published: Instant,
}

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
            state.ctx.metrics.jobs_completed.with_label_values(&["ranked"]).inc();
        }
    }
    Ok(())
}

/// A group's answer, from this replica's inference worker or another's: record it, checkpoint
/// now and then, and ask for more.
async fn compared(
    myself: &ActorRef<CoordinatorMsg>,
    state: &mut State,
    group: Group,
    outcome: Result<GroupOutcome, String>,
) -> Result<()> {
    state.in_flight -= 1;
    if let Some(progress) = local_progress(state) {
        progress.compared();
    }
    match outcome {
        Ok(outcome) => {
            state.num_groups += 1;
            state.ctx.metrics.groups_answered.inc();
            state.unsaved.push(ComparisonRecord {
                items: group_names(&state.images, &group),
                stages: outcome.stages.clone(),
                criterion: Some(state.spec.criterion.clone()),
                model: Some(state.ctx.comparators.primary().model_id()),
            });
            scheduler(state)?.cast(SchedulerMsg::Record(group, outcome))?;
            if checkpoint_due(
                &state.ctx.config.pipeline,
                state.unsaved.len(),
                state.last_saved.elapsed(),
            ) {
                save_checkpoint(state).await?;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "comparison failed; the group is skipped");
            state.num_groups_failed += 1;
            state.last_group_failure = e.to_string();
            if model_failing(state.num_groups_failed, state.num_groups, false) {
                return Err(model_failed(state).into());
            }
        }
    }
    ask_more(myself, state)?;
    round_finished(state).await?;
    Ok(())
}

async fn start(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
    // Only the service writes results; a command-line run keeps its checkpoint there and no more.
    if let (Some(output), Some(Reply::Broker { .. })) = (&state.spec.output, &state.reply) {
        if let Some(earlier) = output.existing_result().await? {
            tracing::info!("the job already has a result; republishing it");
            state
                .ctx
                .metrics
                .jobs_completed
                .with_label_values(&["republished"])
                .inc();
            publish_result(state, earlier).await?;
            return ack(myself, state).await;
        }
    }
    if let (Some(output), true) = (&state.spec.output, state.ctx.compares_groups()) {
        let (records, next_part) = output.read_checkpoint().await?;
        state.next_checkpoint_part = next_part;
        resume_from(state, records);
    }
    let (lister, _) = Actor::spawn_linked(
        None,
        Lister,
        lister::Arguments {
            source: state.spec.source.clone(),
            recursive: state.spec.recursive,
            keys: std::mem::take(&mut state.spec.keys),
            coordinator: myself.clone(),
        },
        myself.get_cell(),
    )
    .await
    .context("starting the lister")?;
    lister.cast(ListerMsg::Next)?;
    state.lister = Some(lister);
    state.awaiting_batch = true;
    progress(state, v1::Stage::Loading);
    Ok(())
}

/// Take up the checkpointed answers of this job's model to this job's question. Answers from
/// another model or question (a folder reused with another `--model`) are left alone: they say
/// nothing about what this model would answer.
fn resume_from(state: &mut State, records: Vec<ComparisonRecord>) {
    let model = state.ctx.comparators.primary().model_id();
    let (ours, others): (Vec<_>, Vec<_>) = records.into_iter().partition(|record| {
        record.model.as_deref() == Some(model.as_str()) && record.criterion.as_ref() == Some(&state.spec.criterion)
    });
    if !ours.is_empty() || !others.is_empty() {
        tracing::info!(
            num_records = ours.len(),
            num_other_model_or_question = others.len(),
            "resuming from checkpoint"
        );
    }
    if let Some(progress) = local_progress(state) {
        progress.resumed(ours.len(), others.len());
    }
    state.resumable = ours.into_iter().map(|r| (r.items, r.stages)).collect();
}

fn image_failed(state: &mut State, error: FileError) {
    tracing::info!(image = %error.name, error_type = error.kind, "image skipped");
    state.ctx.metrics.image_errors.with_label_values(&[error.kind]).inc();
    state.errors.push(error);
}

/// Send listed objects to the loaders while under the in-flight limit; ask for the next batch
/// of the listing once few are pending.
fn load_more(myself: &ActorRef<CoordinatorMsg>, state: &mut State) {
    let (limit, num_loaders) = (
        state.ctx.config.pipeline.max_images_in_flight,
        state.ctx.config.pipeline.num_loaders,
    );
    while state.in_flight < limit {
        let Some(meta) = state.pending.pop_front() else { break };
        let loader = lookup::<Load>(&loader_name(state.next_loader % num_loaders));
        state.next_loader += 1;
        let name = state.spec.source.display_name(&meta.location);
        let load = Load {
            source: state.spec.source.clone(),
            meta,
            reply_to: myself.clone(),
        };
        if loader.is_some_and(|loader| loader.cast(load).is_ok()) {
            state.in_flight += 1;
        } else {
            image_failed(
                state,
                FileError {
                    reason: format!("{name}: no image loader is running"),
                    name,
                    kind: "fetch",
                },
            );
        }
    }
    if !state.listing_done && !state.awaiting_batch && state.pending.len() < lister::BATCH {
        if let Some(lister) = &state.lister {
            state.awaiting_batch = lister.cast(ListerMsg::Next).is_ok();
        }
    }
}

/// Once every listed image is loaded (and scored), rank by score or start comparing.
async fn loading_finished(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
    if state.loading_done
        || !state.listing_done
        || state.awaiting_batch
        || !state.pending.is_empty()
        || state.in_flight > 0
    {
        return Ok(());
    }
    state.loading_done = true;
    tracing::info!(
        num_images = state.num_loaded,
        num_errors = state.errors.len(),
        "images loaded"
    );
    let ranker = || lookup::<RankerMsg>(RANKER).ok_or_else(|| anyhow!("the ranker is not running"));
    if !state.ctx.compares_groups() {
        progress(state, v1::Stage::Fitting);
        ranker()?.cast(RankerMsg::Scores(std::mem::take(&mut state.scored), myself.clone()))?;
        return Ok(());
    }
    let mut prepared = std::mem::take(&mut state.prepared);
    prepared.sort_by(|a, b| a.0.name().cmp(b.0.name()));
    let (mut images, locations): (Vec<PreparedImage>, Vec<String>) = prepared.into_iter().unzip();
    let names = images.iter().map(|image| image.name().to_owned()).collect();
    if shares_groups(state) {
        tracing::info!(
            num_images = images.len(),
            "sharing this job's groups with every replica"
        );
        images = images.into_iter().map(PreparedImage::without_pixels).collect();
        state.sharing = Some(Sharing {
            key: state.ctx.shared_groups.register(myself),
            next_task: 0,
            pending: HashMap::new(),
        });
    }
    state.images = Arc::new(images);
    state.locations = locations;
    let (scheduler, _) = Actor::spawn_linked(
        None,
        Scheduler,
        scheduler::Arguments {
            job: Job::new(names, state.spec.options.clone()),
            coordinator: myself.clone(),
        },
        myself.get_cell(),
    )
    .await
    .context("starting the scheduler")?;
    scheduler.cast(SchedulerMsg::NextRound)?;
    state.scheduler = Some(scheduler);
    progress(state, v1::Stage::Comparing);
    Ok(())
}

/// Whether this job's groups go to the shared queue: a job from the broker with at least
/// `scale.share_groups_from_images` images listed. That is known as soon as enough are listed,
/// so the images loaded from then on keep no pixels here: the replicas that judge them read
/// their own, and a job too large for one replica is too large for its memory too.
fn shares_groups(state: &State) -> bool {
    let from = state.ctx.config.scale.share_groups_from_images;
    from > 0 && state.num_listed >= from && matches!(state.reply, Some(Reply::Broker { .. }))
}

fn scheduler(state: &State) -> Result<&ActorRef<SchedulerMsg>> {
    state.scheduler.as_ref().ok_or_else(|| anyhow!("no scheduler"))
}

fn group_names(images: &[PreparedImage], group: &Group) -> Vec<String> {
    group
        .items
        .iter()
        .map(|&i| images[i as usize].name().to_owned())
        .collect()
}

/// Send the round's groups to the inference worker while under the in-flight limit. A group
/// answered by the checkpoint is recorded at once, without asking the comparator.
fn ask_more(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
    let limit = state.ctx.config.pipeline.max_images_in_flight;
    while state.in_flight < limit {
        let Some(group) = state.round.pop_front() else { break };
        if let Some(stages) = state.resumable.get(&group_names(&state.images, &group)) {
            let outcome = GroupOutcome { stages: stages.clone() };
            state.num_groups += 1;
            state.num_groups_resumed += 1;
            state.ctx.metrics.groups_resumed.inc();
            scheduler(state)?.cast(SchedulerMsg::Record(group, outcome))?;
            continue;
        }
        if let Some(sharing) = state.sharing.as_mut() {
            let task_id = sharing.next_task;
            sharing.next_task += 1;
            let published = Instant::now();
            sharing.pending.insert(task_id, PendingGroup { group, published });
            publish_shared(state, task_id, "first");
        } else {
            let worker = lookup::<Task>(INFERENCE).ok_or_else(|| anyhow!("the inference worker is not running"))?;
            worker
                .cast(Task::Compare {
                    images: state.images.clone(),
                    group,
                    criterion: state.spec.criterion.clone(),
                    reply_to: CompareReply::Coordinator(myself.clone()),
                })
                .map_err(|_| anyhow!("the inference worker stopped"))?;
        }
        state.num_model_calls += 1;
        state.in_flight += 1;
    }
    Ok(())
}

/// Put one of the job's pending shared groups on the shared queue, answered to this replica's
/// reply queue. Best effort: while there is no connection (no reply queue), or when the publish
/// is lost, the group's answer is late, and [`republish_late`] puts it on the queue again.
fn publish_shared(state: &State, task_id: u64, attempt: &'static str) {
    let (Some(sharing), Some(reply_queue), Some(publisher)) = (
        &state.sharing,
        state.ctx.shared_groups.reply_queue(),
        lookup::<PublisherMsg>(PUBLISHER),
    ) else {
        return;
    };
    let Some(pending) = sharing.pending.get(&task_id) else {
        return;
    };
    let locations = pending
        .group
        .items
        .iter()
        .map(|&i| state.locations[i as usize].clone())
        .collect();
    let task = shared_groups::task(
        &state.spec.job_id,
        task_id,
        state.spec.source.store_root(),
        locations,
        &state.spec.criterion,
    );
    let outgoing = Outgoing {
        exchange: String::new(),
        routing_key: state.ctx.config.amqp.groups_queue.clone(),
        payload: task.encode_to_vec(),
        properties: shared_groups::task_properties(&reply_queue, &shared_groups::correlation_id(sharing.key, task_id)),
    };
    if publisher.cast(PublisherMsg::Publish(Box::new(outgoing), None)).is_ok() {
        state
            .ctx
            .metrics
            .shared_groups_published
            .with_label_values(&[attempt])
            .inc();
    }
}

/// Publish again every shared group whose answer is later than `scale.shared_group_timeout_secs`.
/// Runs with the job's watchdog, every quarter of `pipeline.job_stall_timeout_secs`.
fn republish_late(state: &mut State) {
    let timeout = Duration::from_secs(state.ctx.config.scale.shared_group_timeout_secs);
    let Some(sharing) = state.sharing.as_mut() else { return };
    let mut late = Vec::new();
    for (&task_id, pending) in &mut sharing.pending {
        if pending.published.elapsed() > timeout {
            pending.published = Instant::now();
            late.push(task_id);
        }
    }
    for task_id in late {
        tracing::info!(task_id, "a shared group's answer is late; publishing it again");
        publish_shared(state, task_id, "again");
    }
}

/// At the end of a round, checkpoint and ask for the next one.
async fn round_finished(state: &mut State) -> Result<()> {
    if !state.round.is_empty() || state.in_flight > 0 {
        return Ok(());
    }
    save_checkpoint(state).await?;
    progress(state, v1::Stage::Comparing);
    scheduler(state)?.cast(SchedulerMsg::NextRound)?;
    Ok(())
}

/// True when the answers not yet saved are many enough, or the last save old enough, to write a
/// checkpoint now rather than at the end of the round.
fn checkpoint_due(pipeline: &PipelineConfig, unsaved: usize, since_last_save: Duration) -> bool {
    unsaved >= pipeline.checkpoint_every_groups
        || since_last_save >= Duration::from_secs(pipeline.checkpoint_every_secs)
}

async fn save_checkpoint(state: &mut State) -> Result<()> {
    let Some(output) = &state.spec.output else {
        state.unsaved.clear();
        return Ok(());
    };
    if state.unsaved.is_empty() {
        return Ok(());
    }
    output
        .write_checkpoint(state.next_checkpoint_part, &state.unsaved)
        .await?;
    state.next_checkpoint_part += 1;
    state.unsaved.clear();
    state.last_saved = Instant::now();
    Ok(())
}

/// Write the result, publish it, and ack the job; or, for a local job, hand the report back.
async fn finish(myself: &ActorRef<CoordinatorMsg>, state: &mut State, report: Report) -> Result<()> {
    if let Some(Reply::Local { .. }) = &state.reply {
        return reply_locally(myself, state, Ok(report));
    }
    let result = ranked_result(&state.spec, &report, state.num_groups);
    save_checkpoint(state).await?;
    if let Some(output) = &state.spec.output {
        output.write_result(&result).await?;
    }
    publish_result(state, result.encode_to_vec()).await?;
    tracing::info!(
        num_ranked = result.items.len(),
        num_errors = result.errors.len(),
        failure = %result.failure,
        seconds = state.started.elapsed().as_secs_f64(),
        "job done"
    );
    progress(state, v1::Stage::Done);
    ack(myself, state).await
}

/// A failure that would fail again however often the job were tried, such as a source with more
/// images than a job may rank: answered at once rather than requeued.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// Failed groups a job bears before it asks whether its model works at all.
const MIN_FAILED_GROUPS: u64 = 8;

/// True when most of a job's comparisons fail (a GPU fallen off the bus, a broken model): the
/// job then fails, and goes back to the queue once, for a replica whose model works, instead of
/// publishing a ranking fitted to the few answers left, or to none. A group now and then that
/// fails (an image that cannot be read back) only skips that group. While the job runs, it is
/// asked once [`MIN_FAILED_GROUPS`] have failed, so that two failures before the first answer
/// do not end it; when the job is `done`, whatever their number, so that a small job whose every
/// group failed is not ranked from nothing.
fn model_failing(failed: u64, answered: u64, done: bool) -> bool {
    failed > answered && (done || failed >= MIN_FAILED_GROUPS)
}

/// The failure of a job whose comparisons mostly failed ([`model_failing`]).
fn model_failed(state: &State) -> ModelFailing {
    ModelFailing(format!(
        "the model failed on {} of {} groups, most recently: {}; a ranking from the rest would say \
         little",
        state.num_groups_failed,
        state.num_groups_failed + state.num_groups,
        state.last_group_failure
    ))
}

/// Most of a job's comparisons failed ([`model_failing`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ModelFailing(String);

/// Whether a failed job is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Again {
    /// Once, in case the cause was passing (a store or broker away).
    Once,
    /// Never: the job itself is at fault ([`Refused`]).
    Never,
    /// However often it came before: this replica is at fault, its model failing on every
    /// device (`service::device_health`) until Kubernetes restarts it. Answering the job with a
    /// failure would blame the job for the replica.
    Elsewhere,
}

/// Whether a job that failed with `error` is tried again, `alive` being the replica's
/// `/healthz`.
fn again_after(error: &anyhow::Error, alive: bool) -> Again {
    if error.is::<Refused>() {
        Again::Never
    } else if error.is::<ModelFailing>() && !alive {
        Again::Elsewhere
    } else {
        Again::Once
    }
}

/// A job-level failure. A first delivery goes back to the queue when the cause may pass
/// (`Again::Once`), and any delivery when the replica is at fault (`Again::Elsewhere`); a
/// redelivered one, or one `Refused`, is answered with a result that states the failure.
async fn give_up(myself: &ActorRef<CoordinatorMsg>, state: &mut State, reason: String, again: Again) {
    tracing::warn!(error = %reason, "job failed");
    let redelivered = match &state.reply {
        Some(Reply::Broker { redelivered, .. }) => *redelivered,
        Some(Reply::Local { .. }) => {
            let _ = reply_locally(myself, state, Err(reason));
            return;
        }
        None => return,
    };
    if again == Again::Elsewhere || (!redelivered && again == Again::Once) {
        state.ctx.metrics.jobs_completed.with_label_values(&["requeued"]).inc();
        return nack(myself, state).await;
    }
    state.ctx.metrics.jobs_completed.with_label_values(&["failed"]).inc();
    let result = failed_result(&state.spec, state.ctx.comparators.primary().model_id(), reason);
    if let Some(output) = &state.spec.output {
        if let Err(e) = output.write_result(&result).await {
            tracing::warn!(error = format!("{e:#}"), "could not write the failure result");
        }
    }
    match publish_result(state, result.encode_to_vec()).await {
        Ok(()) => {
            if let Err(e) = ack(myself, state).await {
                tracing::warn!(error = format!("{e:#}"), "ack failed");
            }
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "could not publish the failure result");
            nack(myself, state).await;
        }
    }
}

fn result_properties(kind: &str, job_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("x-qrank-job-id".into(), AMQPValue::LongString(job_id.into()));
    BasicProperties::default()
        .with_type(kind.into())
        .with_content_type(protos::CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_message_id(job_id.into())
        .with_correlation_id(job_id.into())
        .with_headers(headers)
}

async fn publish_result(state: &State, payload: Vec<u8>) -> Result<()> {
    let outgoing = Outgoing {
        exchange: state.ctx.config.amqp.exchange.clone(),
        routing_key: state.spec.reply_routing_key.clone(),
        payload,
        properties: result_properties(protos::message_type::RANK_RESULT, &state.spec.job_id),
    };
    publish_confirmed(outgoing)
        .await
        .map_err(|e| anyhow!("publishing the result: {e}"))
}

/// Publish progress, when the job asked for it; best effort, nothing waits for the confirm.
fn progress(state: &State, stage: v1::Stage) {
    let (Some(routing_key), Some(publisher)) = (&state.spec.progress_routing_key, lookup::<PublisherMsg>(PUBLISHER))
    else {
        return;
    };
    let message = RankProgress {
        job_id: state.spec.job_id.clone(),
        stage: stage as i32,
        num_images_listed: state.num_listed,
        num_images_loaded: state.num_loaded,
        num_groups_done: state.num_groups,
        num_groups_planned: state.num_groups_planned,
    };
    let outgoing = Outgoing {
        exchange: state.ctx.config.amqp.exchange.clone(),
        routing_key: routing_key.clone(),
        payload: message.encode_to_vec(),
        properties: result_properties(protos::message_type::RANK_PROGRESS, &state.spec.job_id),
    };
    let _ = publisher.cast(PublisherMsg::Publish(Box::new(outgoing), None));
}

/// The command line's bars, for a local job.
fn local_progress(state: &State) -> Option<&Arc<dyn Progress>> {
    match &state.reply {
        Some(Reply::Local { progress, .. }) => Some(progress),
        _ => None,
    }
}

fn reply_locally(myself: &ActorRef<CoordinatorMsg>, state: &mut State, report: Result<Report, String>) -> Result<()> {
    state.done = true;
    myself.stop(None);
    if let Some(Reply::Local { report: reply, .. }) = state.reply.take() {
        let _ = reply.send(report);
    }
    Ok(())
}

async fn ack(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
    state.done = true;
    state
        .ctx
        .metrics
        .job_duration
        .observe(state.started.elapsed().as_secs_f64());
    myself.stop(None);
    if let Some(Reply::Broker { acker, .. }) = &state.reply {
        acker
            .ack(BasicAckOptions::default())
            .await
            .context("acking the job (it will be redelivered and its result republished)")?;
    }
    Ok(())
}

async fn nack(myself: &ActorRef<CoordinatorMsg>, state: &mut State) {
    state.done = true;
    myself.stop(None);
    let requeue = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Some(Reply::Broker { acker, .. }) = &state.reply {
        if let Err(e) = acker.nack(requeue).await {
            tracing::warn!(error = %e, "nack failed; the broker requeues the job when the connection closes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_fails_only_when_most_of_its_groups_do() {
        assert!(!model_failing(MIN_FAILED_GROUPS - 1, 0, false));
        assert!(!model_failing(20, 20, false));
        assert!(model_failing(MIN_FAILED_GROUPS, MIN_FAILED_GROUPS - 1, false));
        assert!(model_failing(21, 20, false));
    }

    #[test]
    fn a_finished_job_fails_when_most_of_its_few_groups_did() {
        assert!(model_failing(2, 0, true));
        assert!(model_failing(2, 1, true));
        assert!(!model_failing(1, 1, true));
        assert!(!model_failing(0, 0, true));
    }

    #[test]
    fn a_replica_whose_model_is_broken_hands_the_job_on() {
        let failing = anyhow::Error::new(ModelFailing("the model failed on 8 of 8 groups".into()));
        assert_eq!(again_after(&failing, false), Again::Elsewhere);
        // Alive, the replica's model answers other jobs: the job itself may be at fault.
        assert_eq!(again_after(&failing, true), Again::Once);
        let refused = anyhow::Error::new(Refused("too many images".into()));
        assert_eq!(again_after(&refused, false), Again::Never);
        assert_eq!(again_after(&anyhow!("the store is away"), true), Again::Once);
    }

    /// A slow model's answers are saved one by one, a fast model's in batches.
    #[test]
    fn a_checkpoint_is_due_after_enough_answers_or_enough_time() {
        let pipeline = PipelineConfig {
            checkpoint_every_groups: 64,
            checkpoint_every_secs: 5,
            ..PipelineConfig::default()
        };
        assert!(!checkpoint_due(&pipeline, 63, Duration::from_secs(4)));
        assert!(checkpoint_due(&pipeline, 64, Duration::ZERO));
        assert!(checkpoint_due(&pipeline, 1, Duration::from_secs(5)));
    }
}
