//! The comparison rounds: sending a round's groups to the inference worker (or answering them
//! from the checkpoint of an earlier delivery), and saving new answers as they come.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use engine::compare::GroupOutcome;
use engine::rank::ComparisonRecord;
use engine::schedule::Group;
use protos::v1;
use ractor::ActorRef;

use super::failure::{model_failed, model_failing};
use super::finishing::progress;
use super::sharing::{publish_shared, PendingGroup};
use super::{local_progress, scheduler, CoordinatorMsg, State};
use crate::actors::inference::{CompareReply, Task};
use crate::actors::scheduler::SchedulerMsg;
use crate::actors::{lookup, INFERENCE};
use crate::config::PipelineConfig;
use crate::prepared::PreparedImage;
use crate::service::metrics::SharedAttempt;

pub(super) fn group_names(images: &[PreparedImage], group: &Group) -> Vec<String> {
    group
        .items
        .iter()
        .map(|&i| images[i as usize].name().to_owned())
        .collect()
}

/// Send the round's groups to the inference worker while under the in-flight limit. A group
/// answered by the checkpoint is recorded at once, without asking the comparator.
pub(super) fn ask_more(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
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
            publish_shared(state, task_id, SharedAttempt::First);
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

/// At the end of a round, checkpoint and ask for the next one.
pub(super) async fn round_finished(state: &mut State) -> Result<()> {
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
pub(super) fn checkpoint_due(pipeline: &PipelineConfig, unsaved: usize, since_last_save: Duration) -> bool {
    unsaved >= pipeline.checkpoint_every_groups
        || since_last_save >= Duration::from_secs(pipeline.checkpoint_every_secs)
}

pub(super) async fn save_checkpoint(state: &mut State) -> Result<()> {
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

/// A group's answer, from this replica's inference worker or another's: record it, checkpoint
/// now and then, and ask for more.
pub(super) async fn compared(
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

/// Take up the checkpointed answers of this job's model to this job's question. Answers from
/// another model or question (a folder reused with another `--model`) are left alone: they say
/// nothing about what this model would answer.
pub(super) fn resume_from(state: &mut State, records: Vec<ComparisonRecord>) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
