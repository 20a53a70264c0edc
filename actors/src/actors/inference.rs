//! Runs the comparator. Work waits in one bounded queue; `num_inference_threads` OS threads
//! take batches of tasks from it, from any job, and answer each task's coordinator directly.
//!
//! The actor's handler awaits room in the queue, so a full queue holds back the senders rather
//! than growing without bound. Model work never runs on the async threads, and a comparator
//! panic fails that one task, not the thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::compare::{Comparator, Criterion, GroupOutcome};
use engine::image::Image;
use engine::schedule::Group;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, oneshot};

use super::coordinator::CoordinatorMsg;
use crate::pipeline::FileError;
use crate::prepared::PreparedImage;
use crate::service::metrics::Metrics;
use crate::service::Context;

/// One unit of model work.
pub enum Task {
    /// Score one image (comparators that score single images).
    Score(Image, ActorRef<CoordinatorMsg>),
    /// Judge one group of the job's prepared images.
    Compare {
        images: Arc<Vec<PreparedImage>>,
        group: Group,
        criterion: Criterion,
        reply_to: CompareReply,
    },
}

/// Where a group's answer goes.
pub enum CompareReply {
    /// The job's coordinator, on this replica.
    Coordinator(ActorRef<CoordinatorMsg>),
    /// A shared group taken from the queue, answered to the replica that asked.
    Shared(oneshot::Sender<Result<GroupOutcome, String>>),
}

pub struct InferenceWorker;

pub struct State {
    queue: mpsc::Sender<Task>,
    metrics: Arc<Metrics>,
}

impl Actor for InferenceWorker {
    type Msg = Task;
    type State = State;
    type Arguments = Context;

    async fn pre_start(&self, _myself: ActorRef<Task>, ctx: Context) -> Result<State, ActorProcessingErr> {
        let pipeline = &ctx.config.pipeline;
        let (queue, receiver) = mpsc::channel(pipeline.inference_queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let num_threads = match pipeline.num_inference_threads {
            0 if ctx.comparator.scores_directly() => std::thread::available_parallelism().map_or(2, |n| n.get()),
            0 => 1,
            n => n,
        };
        for index in 0..num_threads {
            let (receiver, comparator, metrics) = (receiver.clone(), ctx.comparator.clone(), ctx.metrics.clone());
            let max_batch = pipeline.max_batch_size;
            std::thread::Builder::new()
                .name(format!("qrank-inference-{index}"))
                .spawn(move || work(&receiver, comparator.as_ref(), &metrics, max_batch))?;
        }
        Ok(State {
            queue,
            metrics: ctx.metrics.clone(),
        })
    }

    async fn handle(&self, _myself: ActorRef<Task>, task: Task, state: &mut State) -> Result<(), ActorProcessingErr> {
        state.metrics.inference_queue_depth.inc();
        if state.queue.send(task).await.is_err() {
            // Every thread is gone (they only stop when the queue closes): fail loudly so the
            // supervisor starts a fresh worker.
            return Err("inference threads stopped".into());
        }
        Ok(())
    }
}

/// An inference thread: take a batch, answer each task, until the queue closes (the actor
/// stopped or restarted).
fn work(receiver: &Mutex<mpsc::Receiver<Task>>, comparator: &dyn Comparator, metrics: &Metrics, max_batch: usize) {
    loop {
        let mut batch = Vec::with_capacity(max_batch);
        {
            let mut receiver = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match receiver.blocking_recv() {
                Some(task) => batch.push(task),
                None => return,
            }
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(task) => batch.push(task),
                    Err(_) => break,
                }
            }
        }
        metrics.inference_queue_depth.sub(batch.len() as i64);
        metrics.inference_batch_size.observe(batch.len() as f64);
        for task in batch {
            run(task, comparator, metrics);
        }
    }
}

fn run(task: Task, comparator: &dyn Comparator, metrics: &Metrics) {
    let started = Instant::now();
    match task {
        Task::Score(image, reply_to) => {
            let name = image.name.clone();
            let score = catch_unwind(AssertUnwindSafe(|| comparator.score(&image)))
                .unwrap_or_else(|_| Err(engine::compare::CompareError::Model("the comparator panicked".into())))
                .map_err(|e| FileError {
                    name: name.clone(),
                    kind: "model",
                    reason: format!("{name}: {e}"),
                });
            observe(metrics, "score", started);
            let _ = reply_to.cast(CoordinatorMsg::Scored(name, score));
        }
        Task::Compare {
            images,
            group,
            criterion,
            reply_to,
        } => {
            let outcome = group
                .items
                .iter()
                .map(|&i| images[i as usize].image())
                .collect::<Result<Vec<_>, String>>()
                .and_then(|members| {
                    let members: Vec<&Image> = members.iter().map(AsRef::as_ref).collect();
                    catch_unwind(AssertUnwindSafe(|| comparator.compare(&members, &criterion)))
                        .unwrap_or_else(|_| Err(engine::compare::CompareError::Model("the comparator panicked".into())))
                        .map_err(|e| e.to_string())
                });
            observe(metrics, "compare", started);
            if let Some(stats) = comparator.cache_stats() {
                metrics.observe_cache(stats);
            }
            match reply_to {
                CompareReply::Coordinator(coordinator) => {
                    let _ = coordinator.cast(CoordinatorMsg::Compared(group, outcome));
                }
                CompareReply::Shared(reply) => {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
}

fn observe(metrics: &Metrics, kind: &str, started: Instant) {
    metrics.inference_calls.with_label_values(&[kind]).inc();
    metrics
        .inference_call
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
}
