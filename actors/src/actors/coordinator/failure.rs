//! How a job fails: which failures are tried again (once, never, or on another replica), when
//! failed groups mean the model itself is failing, and the failure result a job is answered
//! with when it is not tried again.

use prost::Message;
use ractor::ActorRef;

use super::finishing::{ack, nack, publish_result, reply_locally};
use super::{CoordinatorMsg, Reply, State};
use crate::service::metrics::JobOutcome;
use crate::service::wire::failed_result;

/// A failure that would fail again however often the job were tried, such as a source with more
/// images than a job may rank: answered at once rather than requeued.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Refused(pub(super) String);

/// Failed groups a job bears before it asks whether its model works at all.
const MIN_FAILED_GROUPS: u64 = 8;

/// True when most of a job's comparisons fail (a GPU fallen off the bus, a broken model): the
/// job then fails, and goes back to the queue once, for a replica whose model works, instead of
/// publishing a ranking fitted to the few answers left, or to none. A group now and then that
/// fails (an image that cannot be read back) only skips that group. While the job runs, it is
/// asked once [`MIN_FAILED_GROUPS`] have failed, so that two failures before the first answer
/// do not end it; when the job is `done`, whatever their number, so that a small job whose every
/// group failed is not ranked from nothing.
pub(super) fn model_failing(failed: u64, answered: u64, done: bool) -> bool {
    failed > answered && (done || failed >= MIN_FAILED_GROUPS)
}

/// The failure of a job whose comparisons mostly failed ([`model_failing`]).
pub(super) fn model_failed(state: &State) -> ModelFailing {
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
pub(super) struct ModelFailing(String);

/// Whether a failed job is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Again {
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
pub(super) fn again_after(error: &anyhow::Error, alive: bool) -> Again {
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
pub(super) async fn give_up(myself: &ActorRef<CoordinatorMsg>, state: &mut State, reason: String, again: Again) {
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
        state.ctx.metrics.job_completed(JobOutcome::Requeued);
        return nack(myself, state).await;
    }
    state.ctx.metrics.job_completed(JobOutcome::Failed);
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

#[cfg(test)]
mod tests {
    use anyhow::anyhow;

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
}
