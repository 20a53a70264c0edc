//! Sharing one job's groups between replicas (DESIGN.md, "Scale").
//!
//! A job with at least `scale.share_groups_from_images` images does not send its groups to its
//! own inference worker. Its coordinator publishes each as a `GroupTask` to the durable work
//! queue `amqp.groups_queue`, with `reply-to` set to this replica's reply queue and a
//! `correlation-id` naming the coordinator and the task. Every replica that serves shared groups
//! consumes that queue ([`crate::actors::group_server`]): it reads the images from the same
//! store, judges the group, sends a `GroupAnswer` to `reply-to`, and only then acks the task, so
//! a replica that dies mid-group leaves it to another. The coordinator keeps everything else:
//! the plan, the fit, checkpoints and the result.
//!
//! Answers are matched by correlation id here and handed to the waiting coordinator. An answer
//! can be lost (the reply queue belongs to one connection and goes with it), so a coordinator
//! publishes a group again when its answer is late (`scale.shared_group_timeout_secs`); a second
//! answer to the same task is ignored.

use std::collections::HashMap;
use std::sync::Mutex;

use engine::compare::{Criterion, GroupOutcome, Stage};
use lapin::message::Delivery;
use lapin::BasicProperties;
use prost::Message;
use protos::v1::{GroupAnswer, GroupTask, StageAnswer};
use ractor::ActorRef;

use super::wire::{check_properties, criterion_from_wire, criterion_to_wire};
use crate::actors::coordinator::CoordinatorMsg;

/// This replica's side of sharing: where answers come back, and who waits for them.
#[derive(Debug, Default)]
pub struct SharedGroups {
    /// The reply queue of the current broker connection; `None` while disconnected, or when this
    /// replica shares no job's groups.
    reply_queue: Mutex<Option<String>>,
    /// Coordinators waiting for answers, by their actor id.
    waiting: Mutex<HashMap<u64, ActorRef<CoordinatorMsg>>>,
}

impl SharedGroups {
    pub fn reply_queue(&self) -> Option<String> {
        lock(&self.reply_queue).clone()
    }

    pub fn set_reply_queue(&self, queue: Option<String>) {
        *lock(&self.reply_queue) = queue;
    }

    /// Start routing answers to `coordinator`; returns its key in correlation ids.
    pub fn register(&self, coordinator: &ActorRef<CoordinatorMsg>) -> u64 {
        let key = coordinator.get_id().pid();
        lock(&self.waiting).insert(key, coordinator.clone());
        key
    }

    pub fn unregister(&self, key: u64) {
        lock(&self.waiting).remove(&key);
    }

    /// Hand an answer to the coordinator that asked. Answers nobody waits for (the job finished
    /// or was given up) and undecodable ones are dropped with a log line: the coordinator asks
    /// again when an answer is late.
    pub fn route(&self, delivery: &Delivery) {
        let correlation = delivery.properties.correlation_id().as_ref().map(|c| c.to_string());
        let Some((key, task_id)) = correlation.as_deref().and_then(parse_correlation_id) else {
            tracing::warn!(correlation_id = ?correlation, "a shared-group answer without a valid correlation id; dropped");
            return;
        };
        let outcome = match GroupAnswer::decode(delivery.data.as_slice()) {
            Ok(answer) => outcome_of(answer),
            Err(e) => {
                tracing::warn!(error = %e, "an undecodable shared-group answer; dropped");
                return;
            }
        };
        let coordinator = lock(&self.waiting).get(&key).cloned();
        match coordinator {
            Some(coordinator) => {
                let _ = coordinator.cast(CoordinatorMsg::Answered(task_id, outcome));
            }
            None => tracing::debug!(task_id, "an answer for a job no longer waiting; dropped"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `<coordinator key>/<task id>`.
pub fn correlation_id(coordinator: u64, task_id: u64) -> String {
    format!("{coordinator}/{task_id}")
}

fn parse_correlation_id(id: &str) -> Option<(u64, u64)> {
    let (key, task) = id.split_once('/')?;
    Some((key.parse().ok()?, task.parse().ok()?))
}

/// The task for one group of a job: its images' locations in `store`, in slot order.
pub fn task(job_id: &str, task_id: u64, store: &str, locations: Vec<String>, criterion: &Criterion) -> GroupTask {
    let (criterion, custom_question) = criterion_to_wire(criterion);
    GroupTask {
        job_id: job_id.to_owned(),
        task_id,
        store: store.to_owned(),
        locations,
        criterion,
        custom_question,
    }
}

/// Properties of a task: persistent, typed, answered to `reply_to` under `correlation_id`.
pub fn task_properties(reply_to: &str, correlation_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_type(protos::message_type::GROUP_TASK.into())
        .with_content_type(protos::CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_reply_to(reply_to.into())
        .with_correlation_id(correlation_id.into())
}

/// Properties of an answer to a task with `correlation_id`.
pub fn answer_properties(correlation_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_type(protos::message_type::GROUP_ANSWER.into())
        .with_content_type(protos::CONTENT_TYPE.into())
        .with_correlation_id(correlation_id.into())
}

/// A task checked for judging: where to answer, and what.
#[derive(Debug)]
pub struct CheckedTask {
    pub task: GroupTask,
    pub criterion: Criterion,
    pub reply_to: String,
    pub correlation_id: String,
}

/// Decode and check a task delivery; the error is the reason to dead-letter it.
pub fn check_task(properties: &BasicProperties, body: &[u8]) -> Result<CheckedTask, String> {
    check_properties(properties, protos::message_type::GROUP_TASK).map_err(|poison| poison.to_string())?;
    let reply_to = properties
        .reply_to()
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let correlation_id = properties
        .correlation_id()
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_default();
    if reply_to.is_empty() || correlation_id.is_empty() {
        return Err("a GroupTask needs reply-to and correlation-id properties".into());
    }
    let task = GroupTask::decode(body).map_err(|e| format!("undecodable GroupTask: {e}"))?;
    if !(2..=engine::schedule::MAX_GROUP).contains(&task.locations.len()) {
        return Err(format!(
            "invalid GroupTask: {} locations, want 2 to {}",
            task.locations.len(),
            engine::schedule::MAX_GROUP
        ));
    }
    if task.store.is_empty() {
        return Err("invalid GroupTask: store is empty".into());
    }
    let criterion = criterion_from_wire(task.criterion, task.custom_question.clone())
        .map_err(|e| format!("invalid GroupTask: {e}"))?;
    Ok(CheckedTask {
        task,
        criterion,
        reply_to,
        correlation_id,
    })
}

/// The answer to `task`: the comparator's outcome, or why there is none.
pub fn answer(task: &GroupTask, outcome: Result<GroupOutcome, String>) -> GroupAnswer {
    let (stages, error) = match outcome {
        Ok(outcome) => (
            outcome
                .stages
                .into_iter()
                .map(|stage| StageAnswer {
                    slots: stage.slots.into_iter().map(u32::from).collect(),
                    probs: stage.probs,
                })
                .collect(),
            String::new(),
        ),
        Err(error) => (Vec::new(), error),
    };
    GroupAnswer {
        job_id: task.job_id.clone(),
        task_id: task.task_id,
        stages,
        error,
    }
}

/// An answer as the outcome a local comparator would have given. The fit checks the stages
/// again when they are recorded.
fn outcome_of(answer: GroupAnswer) -> Result<GroupOutcome, String> {
    if !answer.error.is_empty() {
        return Err(answer.error);
    }
    let stages = answer
        .stages
        .into_iter()
        .map(|stage| {
            let slots = stage
                .slots
                .into_iter()
                .map(|slot| u8::try_from(slot).map_err(|_| format!("slot {slot} out of range")))
                .collect::<Result<Vec<u8>, String>>()?;
            Ok(Stage {
                slots,
                probs: stage.probs,
            })
        })
        .collect::<Result<Vec<Stage>, String>>()?;
    if stages.is_empty() {
        return Err("an answer without stages".into());
    }
    Ok(GroupOutcome { stages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_round_trip_and_junk_is_refused() {
        assert_eq!(
            parse_correlation_id(&correlation_id(17, 4_000_000_001)),
            Some((17, 4_000_000_001))
        );
        assert_eq!(parse_correlation_id("17"), None);
        assert_eq!(parse_correlation_id("a/1"), None);
    }

    #[test]
    fn an_answer_carries_the_outcome_or_the_error() {
        let task = task(
            "job",
            3,
            "s3://b/",
            vec!["a.jpg".into(), "b.jpg".into()],
            &Criterion::Noise,
        );
        let outcome = GroupOutcome {
            stages: vec![Stage {
                slots: vec![0, 1],
                probs: vec![0.25, 0.75],
            }],
        };
        assert_eq!(outcome_of(answer(&task, Ok(outcome.clone()))), Ok(outcome));
        assert_eq!(
            outcome_of(answer(&task, Err("a.jpg: truncated".into()))),
            Err("a.jpg: truncated".into())
        );
    }

    #[test]
    fn tasks_are_checked_before_they_are_judged() {
        let properties = task_properties("reply", "1/2");
        let good = task(
            "job",
            2,
            "s3://b/",
            vec!["a.jpg".into(), "b.jpg".into()],
            &Criterion::Custom("Which is sharper?".into()),
        );
        let checked = check_task(&properties, &good.encode_to_vec()).unwrap();
        assert_eq!(checked.criterion, Criterion::Custom("Which is sharper?".into()));
        assert_eq!(
            (checked.reply_to.as_str(), checked.correlation_id.as_str()),
            ("reply", "1/2")
        );

        let one = task("job", 2, "s3://b/", vec!["a.jpg".into()], &Criterion::Overall);
        let reason = check_task(&properties, &one.encode_to_vec()).unwrap_err();
        assert!(reason.contains("1 locations, want 2 to 4"), "{reason}");
        let reason = check_task(&properties, b"\xff\xff").unwrap_err();
        assert!(reason.starts_with("undecodable GroupTask"), "{reason}");
        let reason = check_task(&BasicProperties::default(), &good.encode_to_vec()).unwrap_err();
        assert!(reason.contains("reply-to"), "{reason}");
    }
}
