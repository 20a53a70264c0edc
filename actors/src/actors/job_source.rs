//! Takes jobs from the broker: checks each delivery, dead-letters poison with its reason, and
//! starts a coordinator per valid job, linked to itself. It tracks the jobs in flight, so that a
//! crashed coordinator's job goes back to the queue and so that shutdown can drain or abandon
//! them. The broker connection itself runs in a task (`service::broker`) that it controls.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::options::BasicNackOptions;
use lapin::Acker;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::coordinator::{self, Coordinator, CoordinatorMsg, Reply};
use super::publisher::PublisherMsg;
use super::{lookup, PUBLISHER};
use crate::service::broker::{self, Control};
use crate::service::dead_letter::dead_letter;
use crate::service::metrics::JobOutcome;
use crate::service::wire::decode_job;
use crate::service::Context;

/// How long closing waits for the connection task.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

pub enum JobSourceMsg {
    Delivery(Box<Delivery>),
    /// Stop consuming; answer once no job is in flight.
    Drain(RpcReplyPort<()>),
    /// Return every job in flight to the queue and stop their coordinators; answers how many.
    Abandon(RpcReplyPort<usize>),
    /// Close the broker connection.
    Close(RpcReplyPort<()>),
}

pub struct JobSource;

struct InFlight {
    coordinator: ActorCell,
    acker: Acker,
    redelivered: bool,
}

pub struct State {
    ctx: Context,
    control: watch::Sender<Control>,
    connection: Option<JoinHandle<()>>,
    in_flight: HashMap<ActorId, InFlight>,
    drained: Option<RpcReplyPort<()>>,
}

impl Actor for JobSource {
    type Msg = JobSourceMsg;
    type State = State;
    type Arguments = Context;

    async fn pre_start(&self, myself: ActorRef<JobSourceMsg>, ctx: Context) -> Result<State, ActorProcessingErr> {
        let publisher = lookup::<PublisherMsg>(PUBLISHER).ok_or("the publisher must start before the job source")?;
        let (control, watch) = watch::channel(Control::Consume);
        let connection = tokio::spawn(broker::run(ctx.clone(), myself, publisher, watch));
        Ok(State {
            ctx,
            control,
            connection: Some(connection),
            in_flight: HashMap::new(),
            drained: None,
        })
    }

    async fn post_stop(&self, _myself: ActorRef<JobSourceMsg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        let _ = state.control.send(Control::Closing);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<JobSourceMsg>,
        message: JobSourceMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            JobSourceMsg::Delivery(delivery) => take(&myself, *delivery, state).await,
            JobSourceMsg::Drain(reply) => {
                let _ = state.control.send(Control::Draining);
                if state.in_flight.is_empty() {
                    let _ = reply.send(());
                } else {
                    tracing::info!(num_jobs = state.in_flight.len(), "waiting for jobs in flight");
                    state.drained = Some(reply);
                }
            }
            JobSourceMsg::Abandon(reply) => {
                let num_jobs = state.in_flight.len();
                for (_, job) in state.in_flight.drain() {
                    job.coordinator.stop(Some("shutdown grace period exceeded".into()));
                    nack(&job.acker, true).await;
                    state.ctx.metrics.job_completed(JobOutcome::Requeued);
                    state.ctx.metrics.jobs_in_flight.dec();
                }
                let _ = reply.send(num_jobs);
            }
            JobSourceMsg::Close(reply) => {
                let _ = state.control.send(Control::Closing);
                if let Some(connection) = state.connection.take() {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection).await;
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<JobSourceMsg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let (id, crash) = match &event {
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell.get_id(), None),
            SupervisionEvent::ActorFailed(cell, error) => (cell.get_id(), Some(error.to_string())),
            _ => return Ok(()),
        };
        let Some(job) = state.in_flight.remove(&id) else {
            return Ok(());
        };
        state.ctx.metrics.jobs_in_flight.dec();
        if let Some(error) = crash {
            // A crash that repeats on redelivery would loop forever: the second one dead-letters.
            tracing::error!(error, redelivered = job.redelivered, "job coordinator crashed");
            state.ctx.metrics.job_completed(JobOutcome::Crashed);
            if job.acker.usable() {
                nack(&job.acker, !job.redelivered).await;
            }
        }
        if state.in_flight.is_empty() {
            if let Some(reply) = state.drained.take() {
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

async fn take(myself: &ActorRef<JobSourceMsg>, delivery: Delivery, state: &mut State) {
    let ctx = &state.ctx;
    ctx.metrics.jobs_received.inc();
    if let Some(sent) = *delivery.properties.timestamp() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        ctx.metrics.job_queue_wait.observe(now.saturating_sub(sent) as f64);
    }
    let decoded = decode_job(
        &delivery.properties,
        &delivery.data,
        &ctx.config.pipeline,
        &ctx.config.amqp.default_reply_routing_key,
    );
    let spec = match decoded {
        Ok(spec) => spec,
        Err(poison) => {
            tracing::warn!(error = %poison, error_type = poison.label(), "poison job message; dead-lettering it");
            ctx.metrics
                .jobs_dead_lettered
                .with_label_values(&[poison.label()])
                .inc();
            tokio::spawn(dead_letter(
                ctx.config.amqp.dead_letter_exchange.clone(),
                ctx.config.amqp.queue.clone(),
                delivery,
                poison.to_string(),
                poison.label(),
            ));
            return;
        }
    };
    let arguments = coordinator::Arguments {
        ctx: ctx.clone(),
        spec,
        reply: Reply::Broker {
            acker: delivery.acker.clone(),
            redelivered: delivery.redelivered,
        },
    };
    match Actor::spawn_linked(None, Coordinator, arguments, myself.get_cell()).await {
        Ok((coordinator, _)) => {
            state.in_flight.insert(
                coordinator.get_id(),
                InFlight {
                    coordinator: coordinator.get_cell(),
                    acker: delivery.acker,
                    redelivered: delivery.redelivered,
                },
            );
            ctx.metrics.jobs_in_flight.inc();
            let _ = coordinator.cast(CoordinatorMsg::Start);
        }
        Err(e) => {
            tracing::error!(error = %e, "could not start a job coordinator");
            nack(&delivery.acker, true).await;
        }
    }
}

async fn nack(acker: &Acker, requeue: bool) {
    let options = BasicNackOptions {
        requeue,
        ..BasicNackOptions::default()
    };
    if let Err(e) = acker.nack(options).await {
        tracing::warn!(error = %e, "nack failed; the broker requeues the job when the connection closes");
    }
}
