//! Judges groups that other replicas' jobs (or this replica's) put on the shared queue (see
//! `service::shared_groups`). For each task it reads the images from the task's store, as a
//! loader would, has the inference worker judge them, publishes the answer to the task's
//! `reply-to` queue with a confirm, and only then acks the task: a replica that dies mid-group
//! leaves the task to another. A task that cannot be decoded is dead-lettered with its reason;
//! an image that cannot be read makes an answer with the error, as the job would skip such a
//! group of its own.
//!
//! Each task runs in a task of its own; the queue's prefetch (`scale.shared_groups_prefetch`)
//! bounds how many run at once.

use std::sync::Arc;

use engine::compare::GroupOutcome;
use engine::image::Image;
use engine::schedule::Group;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use prost::Message;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::oneshot;

use super::inference::{CompareReply, Task};
use super::loader::load_one;
use super::publisher::{publish_confirmed, Outgoing};
use super::{lookup, INFERENCE};
use crate::prepared::PreparedImage;
use crate::service::dead_letter::dead_letter;
use crate::service::metrics::SharedServed;
use crate::service::shared_groups::{self, CheckedTask};
use crate::service::Context;
use crate::source::Source;

pub enum GroupServerMsg {
    Delivery(Box<Delivery>),
}

pub struct GroupServer;

impl Actor for GroupServer {
    type Msg = GroupServerMsg;
    type State = Context;
    type Arguments = Context;

    async fn pre_start(&self, _myself: ActorRef<GroupServerMsg>, ctx: Context) -> Result<Context, ActorProcessingErr> {
        Ok(ctx)
    }

    async fn handle(
        &self,
        _myself: ActorRef<GroupServerMsg>,
        GroupServerMsg::Delivery(delivery): GroupServerMsg,
        ctx: &mut Context,
    ) -> Result<(), ActorProcessingErr> {
        tokio::spawn(serve(ctx.clone(), *delivery));
        Ok(())
    }
}

async fn serve(ctx: Context, delivery: Delivery) {
    let served = |outcome| ctx.metrics.shared_group_served(outcome);
    let checked = match shared_groups::check_task(&delivery.properties, &delivery.data) {
        Ok(checked) => checked,
        Err(reason) => {
            tracing::warn!(error = %reason, "poison shared-group task; dead-lettering it");
            served(SharedServed::Poison);
            let amqp = &ctx.config.amqp;
            dead_letter(
                amqp.dead_letter_exchange.clone(),
                amqp.groups_queue.clone(),
                delivery,
                reason,
                "invalid",
            )
            .await;
            return;
        }
    };
    let outcome = judge(&ctx, &checked).await;
    let requeue = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Err(e) = &outcome {
        if !ctx.health.alive() {
            // This replica's model fails on every device: the group is not at fault, and a
            // working replica should answer it.
            tracing::info!(job_id = %checked.task.job_id, error = %e, "the model is broken here; returning the shared group");
            served(SharedServed::Requeued);
            if let Err(e) = delivery.acker.nack(requeue).await {
                tracing::warn!(error = %e, "returning a shared-group task failed; the broker requeues it");
            }
            return;
        }
        tracing::info!(job_id = %checked.task.job_id, error = %e, "a shared group could not be judged");
    }
    let served_as = if outcome.is_ok() {
        SharedServed::Answered
    } else {
        SharedServed::Failed
    };
    let answer = shared_groups::answer(&checked.task, outcome);
    let settled = match publish_answer(&checked, answer.encode_to_vec()).await {
        Ok(()) => {
            served(served_as);
            delivery.acker.ack(BasicAckOptions::default()).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not publish a shared-group answer; returning the task");
            served(SharedServed::Requeued);
            delivery.acker.nack(requeue).await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "settling a shared-group task failed; the broker requeues it");
    }
}

/// Read the task's images and have the inference worker judge them.
async fn judge(ctx: &Context, checked: &CheckedTask) -> Result<GroupOutcome, String> {
    let source = Source::open(&checked.task.store).map_err(|e| format!("store {}: {e:#}", checked.task.store))?;
    let mut images = Vec::with_capacity(checked.task.locations.len());
    for location in &checked.task.locations {
        images.push(load(ctx, &source, location).await?);
    }
    let worker = lookup::<Task>(INFERENCE).ok_or("the inference worker is not running")?;
    let (reply, answered) = oneshot::channel();
    let group = Group {
        items: (0..images.len() as u32).collect(),
    };
    worker
        .cast(Task::Compare {
            images: Arc::new(images.into_iter().map(PreparedImage::unkept).collect()),
            group,
            criterion: checked.criterion.clone(),
            reply_to: CompareReply::Shared(reply),
        })
        .map_err(|_| "the inference worker stopped")?;
    answered
        .await
        .map_err(|_| "the inference worker dropped the group".to_owned())?
}

/// One image, looked up and then read as a loader reads it.
async fn load(ctx: &Context, source: &Source, location: &str) -> Result<Image, String> {
    let path = Path::parse(location).map_err(|e| format!("{location}: not an object location: {e}"))?;
    let name = source.display_name(&path);
    let meta = source.store.head(&path).await.map_err(|e| format!("{name}: {e}"))?;
    load_one(ctx, source, &meta, &name).await.map_err(|e| e.reason)
}

async fn publish_answer(checked: &CheckedTask, payload: Vec<u8>) -> Result<(), String> {
    publish_confirmed(Outgoing {
        exchange: String::new(),
        routing_key: checked.reply_to.clone(),
        payload,
        properties: shared_groups::answer_properties(&checked.correlation_id),
    })
    .await
}
