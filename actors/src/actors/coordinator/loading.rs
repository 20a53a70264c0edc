//! Loading a job's images: the listing in batches, a bounded number of images loading (or being
//! scored) at once, and, once all are in, the fit of the scores or the start of the comparing.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Context as _, Result};
use engine::job::Job;
use protos::v1;
use ractor::{Actor, ActorRef};

use super::asking::resume_from;
use super::finishing::{ack, progress, publish_result};
use super::sharing::Sharing;
use super::{image_failed, CoordinatorMsg, Reply, State};
use crate::actors::lister::{self, Lister, ListerMsg};
use crate::actors::loader::Load;
use crate::actors::ranker::RankerMsg;
use crate::actors::scheduler::{self, Scheduler, SchedulerMsg};
use crate::actors::{loader_name, lookup, RANKER};
use crate::pipeline::FileError;
use crate::prepared::PreparedImage;
use crate::service::metrics::JobOutcome;

/// Send listed objects to the loaders while under the in-flight limit; ask for the next batch
/// of the listing once few are pending.
pub(super) fn load_more(myself: &ActorRef<CoordinatorMsg>, state: &mut State) {
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
pub(super) async fn loading_finished(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
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
pub(super) fn shares_groups(state: &State) -> bool {
    let from = state.ctx.config.scale.share_groups_from_images;
    from > 0 && state.num_listed >= from && matches!(state.reply, Some(Reply::Broker { .. }))
}

/// Start the job: a result it already has (a redelivery whose ack was lost) is published again
/// and acked; otherwise its checkpoint is taken up and the listing of its source begins.
pub(super) async fn start(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
    // Only the service writes results; a command-line run keeps its checkpoint there and no more.
    if let (Some(output), Some(Reply::Broker { .. })) = (&state.spec.output, &state.reply) {
        if let Some(earlier) = output.existing_result().await? {
            tracing::info!("the job already has a result; republishing it");
            state.ctx.metrics.job_completed(JobOutcome::Republished);
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
