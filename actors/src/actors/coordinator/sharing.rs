//! Groups on the shared queue, for a job too large for one replica (`service::shared_groups`):
//! every replica judges them and answers to this job's replica, and a group whose answer is
//! late is published again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use engine::schedule::Group;
use prost::Message;

use super::State;
use crate::actors::publisher::{Outgoing, PublisherMsg};
use crate::actors::{lookup, PUBLISHER};
use crate::service::metrics::SharedAttempt;
use crate::service::shared_groups;

/// A job whose groups go to the shared queue: its key in correlation ids, and the groups
/// published and not yet answered, by task id.
pub(super) struct Sharing {
    pub(super) key: u64,
    pub(super) next_task: u64,
    pub(super) pending: HashMap<u64, PendingGroup>,
}

pub(super) struct PendingGroup {
    pub(super) group: Group,
    pub(super) published: Instant,
}

/// Put one of the job's pending shared groups on the shared queue, answered to this replica's
/// reply queue. Best effort: while there is no connection (no reply queue), or when the publish
/// is lost, the group's answer is late, and [`republish_late`] puts it on the queue again.
pub(super) fn publish_shared(state: &State, task_id: u64, attempt: SharedAttempt) {
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
        state.ctx.metrics.shared_group_published(attempt);
    }
}

/// Publish again every shared group whose answer is later than `scale.shared_group_timeout_secs`.
/// Runs with the job's watchdog, every quarter of `pipeline.job_stall_timeout_secs`.
pub(super) fn republish_late(state: &mut State) {
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
        publish_shared(state, task_id, SharedAttempt::Again);
    }
}
