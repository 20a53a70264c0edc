//! Decides which groups a comparison job asks about next. It owns the job's
//! [`engine::job::Job`] (plan and answers); planning a later round refits the model, so it runs
//! on the blocking pool. When the plan is exhausted it hands the job to the ranker and stops.

use engine::compare::GroupOutcome;
use engine::job::Job;
use engine::schedule::Group;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::coordinator::CoordinatorMsg;
use super::ranker::RankerMsg;
use super::{lookup, RANKER};

pub enum SchedulerMsg {
    /// Record an answer to a planned group.
    Record(Group, GroupOutcome),
    /// Plan the next round; the coordinator receives `Round`, or `Ranked` once the plan ends.
    NextRound,
}

pub struct Scheduler;

pub struct Arguments {
    pub job: Job,
    pub coordinator: ActorRef<CoordinatorMsg>,
}

pub struct State {
    job: Option<Job>,
    coordinator: ActorRef<CoordinatorMsg>,
}

impl Actor for Scheduler {
    type Msg = SchedulerMsg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        Ok(State {
            job: Some(args.job),
            coordinator: args.coordinator,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(mut job) = state.job.take() else {
            return Ok(());
        };
        match message {
            SchedulerMsg::Record(group, outcome) => {
                if let Err(e) = job.record(&group, &outcome) {
                    tracing::warn!(error = %e, "comparator answer rejected");
                }
                state.job = Some(job);
            }
            SchedulerMsg::NextRound => {
                let planned = tokio::task::spawn_blocking(move || {
                    let groups = job.next_round();
                    (job, groups)
                })
                .await;
                let (job, groups) = match planned {
                    Ok(planned) => planned,
                    Err(e) => {
                        let _ = state
                            .coordinator
                            .cast(CoordinatorMsg::Ranked(Err(format!("planning panicked: {e}"))));
                        myself.stop(None);
                        return Ok(());
                    }
                };
                if groups.is_empty() {
                    match lookup::<RankerMsg>(RANKER) {
                        Some(ranker) => {
                            let _ = ranker.cast(RankerMsg::Fit(Box::new(job), state.coordinator.clone()));
                        }
                        None => {
                            let _ = state
                                .coordinator
                                .cast(CoordinatorMsg::Ranked(Err("the ranker is not running".into())));
                        }
                    }
                    myself.stop(None);
                } else {
                    let planned = job.calls_budget();
                    state.job = Some(job);
                    let _ = state.coordinator.cast(CoordinatorMsg::Round(groups, planned));
                }
            }
        }
        Ok(())
    }
}
