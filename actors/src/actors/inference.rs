//! Runs the comparator. Work waits in one bounded queue; each device's copy of the model
//! (`crate::models::Comparators`) gets `num_inference_threads` OS threads, which take batches of
//! tasks from it, from any job, and answer each task's coordinator directly. One queue for all
//! devices keeps every GPU busy whatever the mix of jobs: a device that finishes early takes the
//! next batch. Each copy keeps its own embedding cache, so an image judged on one GPU and then on
//! another is sent through the vision tower on both.
//!
//! A device whose model fails call after call stops taking work and hands back what it holds
//! (`crate::service::device_health`).
//!
//! The actor's handler awaits room in the queue, so a full queue holds back the senders rather
//! than growing without bound. Model work never runs on the async threads, and a comparator
//! panic fails that one task, not the thread.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use engine::compare::{Comparator, CompareError, Criterion, GroupOutcome};
use engine::image::Image;
use engine::schedule::Group;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::{mpsc, oneshot};

use super::coordinator::CoordinatorMsg;
use crate::pipeline::FileError;
use crate::prepared::PreparedImage;
use crate::service::device_health::DeviceHealth;
use crate::service::metrics::Metrics;
use crate::service::Context;

/// The `kind` label of the call metrics: one image scored, or a group compared.
const SCORE: &str = "score";
const COMPARE: &str = "compare";

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
        let devices = ctx.comparators.on_devices();
        let health = Arc::new(DeviceHealth::new(
            devices.iter().map(|d| d.device.clone()).collect(),
            ctx.health.clone(),
            ctx.metrics.clone(),
        ));
        let threads_per_device = match pipeline.num_inference_threads {
            0 if ctx.comparators.primary().scores_directly() => {
                std::thread::available_parallelism().map_or(2, |n| n.get())
            }
            0 => 1,
            n => n,
        };
        let kind = if ctx.comparators.primary().scores_directly() {
            SCORE
        } else {
            COMPARE
        };
        for (device_index, copy) in devices.iter().enumerate() {
            // The device's call and failure series, at 0 until its first call, so that its first
            // failure counts in `rate()`.
            ctx.metrics.inference_calls.with_label_values(&[kind, &copy.device]);
            ctx.metrics.inference_failures.with_label_values(&[kind, &copy.device]);
            for index in 0..threads_per_device {
                let thread = Thread {
                    comparator: copy.comparator.clone(),
                    device: copy.device.clone(),
                    device_index,
                    metrics: ctx.metrics.clone(),
                    max_batch: pipeline.max_batch_size,
                    threads: devices.len() * threads_per_device,
                    health: health.clone(),
                    hand_back: queue.downgrade(),
                };
                let receiver = receiver.clone();
                std::thread::Builder::new()
                    .name(format!("qrank-inference-{}-{index}", copy.device))
                    .spawn(move || thread.work(&receiver))?;
            }
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

/// How many of the `waiting` tasks one of `threads` threads takes at once: up to `max_batch`,
/// but no more than its share, so that a device does not work through a batch alone while
/// another device's threads wait for the next round's tasks.
fn batch_share(waiting: usize, threads: usize, max_batch: usize) -> usize {
    waiting.div_ceil(threads.max(1)).clamp(1, max_batch.max(1))
}

/// An inference thread and the copy of the model it runs.
struct Thread {
    comparator: Arc<dyn Comparator>,
    /// The `device` label of its metrics.
    device: String,
    /// Its device's index among the process's devices, for the cache metrics.
    device_index: usize,
    metrics: Arc<Metrics>,
    max_batch: usize,
    /// Inference threads across all devices.
    threads: usize,
    health: Arc<DeviceHealth>,
    /// The queue, to hand tasks back to once the device is retired. Weak, so that the queue
    /// still closes when the actor stops.
    hand_back: mpsc::WeakSender<Task>,
}

impl Thread {
    /// Take a batch, answer each task, until the queue closes (the actor stopped or restarted).
    fn work(&self, receiver: &Mutex<mpsc::Receiver<Task>>) {
        loop {
            let mut batch = Vec::with_capacity(self.max_batch);
            {
                let mut receiver = receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match receiver.blocking_recv() {
                    Some(task) => batch.push(task),
                    None => return,
                }
                let share = batch_share(1 + receiver.len(), self.threads, self.max_batch);
                while batch.len() < share {
                    match receiver.try_recv() {
                        Ok(task) => batch.push(task),
                        Err(_) => break,
                    }
                }
            }
            self.metrics.inference_queue_depth.sub(batch.len() as i64);
            self.metrics.inference_batch_size.observe(batch.len() as f64);
            for task in batch {
                if self.health.retired(self.device_index) {
                    self.hand_back(task);
                } else {
                    self.run(task);
                }
            }
            if self.health.retired(self.device_index) {
                return;
            }
        }
    }

    /// Put a task this retired device will not run back on the queue, for the other devices.
    fn hand_back(&self, task: Task) {
        let Some(queue) = self.hand_back.upgrade() else {
            return; // The actor stopped: nobody waits for the answer.
        };
        self.metrics.inference_queue_depth.inc();
        if queue.blocking_send(task).is_err() {
            self.metrics.inference_queue_depth.dec();
        }
    }

    fn run(&self, task: Task) {
        let (comparator, metrics) = (self.comparator.as_ref(), self.metrics.as_ref());
        let started = Instant::now();
        match task {
            Task::Score(image, reply_to) => {
                let name = image.name.clone();
                let score = catch_unwind(AssertUnwindSafe(|| comparator.score(&image)))
                    .unwrap_or_else(|_| Err(CompareError::Model("the comparator panicked".into())));
                self.record(score.as_ref().err());
                let score = score.map_err(|e| FileError {
                    name: name.clone(),
                    kind: "model",
                    reason: format!("{name}: {e}"),
                });
                self.observe(SCORE, started, score.is_ok());
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
                        let answer = catch_unwind(AssertUnwindSafe(|| comparator.compare(&members, &criterion)))
                            .unwrap_or_else(|_| Err(CompareError::Model("the comparator panicked".into())));
                        self.record(answer.as_ref().err());
                        answer.map_err(|e| e.to_string())
                    });
                self.observe(COMPARE, started, outcome.is_ok());
                if let Some(stats) = comparator.cache_stats() {
                    metrics.observe_cache(self.device_index, stats);
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

    /// Tell the devices' health what the model did: answered, or failed in itself. A failure
    /// that is an image's (one the model cannot read) says nothing of the device.
    fn record(&self, error: Option<&CompareError>) {
        match error {
            None => self.health.record(self.device_index, None),
            Some(error @ CompareError::Model(_)) => self.health.record(self.device_index, Some(&error.to_string())),
            Some(_) => {}
        }
    }

    fn observe(&self, kind: &str, started: Instant, succeeded: bool) {
        let labels = [kind, self.device.as_str()];
        self.metrics.inference_calls.with_label_values(&labels).inc();
        if !succeeded {
            self.metrics.inference_failures.with_label_values(&labels).inc();
        }
        self.metrics
            .inference_call
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::batch_share;

    #[test]
    fn a_thread_takes_its_share_of_the_waiting_tasks() {
        // One thread (one device) takes up to the batch size, as before there were devices.
        assert_eq!(batch_share(40, 1, 16), 16);
        assert_eq!(batch_share(5, 1, 16), 5);
        // Two devices, five tasks of a round's end: three, and the other device takes the rest.
        assert_eq!(batch_share(5, 2, 16), 3);
        assert_eq!(batch_share(2, 2, 16), 1);
        assert_eq!(batch_share(1, 8, 16), 1);
        assert_eq!(batch_share(100, 2, 0), 1);
    }
}
