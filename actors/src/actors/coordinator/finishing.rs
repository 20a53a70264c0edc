//! The end of a job: the result written, published with a confirm and only then acked, or, for
//! a job from the command line, the report handed back; and the progress messages on the way.

use anyhow::{anyhow, Context as _, Result};
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use prost::Message;
use protos::v1::{self, RankProgress};
use ractor::ActorRef;

use super::asking::save_checkpoint;
use super::{CoordinatorMsg, Reply, State};
use crate::actors::publisher::{publish_confirmed, Outgoing, PublisherMsg};
use crate::actors::{lookup, PUBLISHER};
use crate::pipeline::Report;
use crate::service::wire::ranked_result;

/// Write the result, publish it, and ack the job; or, for a local job, hand the report back.
pub(super) async fn finish(myself: &ActorRef<CoordinatorMsg>, state: &mut State, report: Report) -> Result<()> {
    if let Some(Reply::Local { .. }) = &state.reply {
        return reply_locally(myself, state, Ok(report));
    }
    let result = ranked_result(&state.spec, &report, state.num_groups);
    save_checkpoint(state).await?;
    if let Some(output) = &state.spec.output {
        output.write_result(&result).await?;
    }
    publish_result(state, result.encode_to_vec()).await?;
    tracing::info!(
        num_ranked = result.items.len(),
        num_errors = result.errors.len(),
        failure = %result.failure,
        seconds = state.started.elapsed().as_secs_f64(),
        "job done"
    );
    progress(state, v1::Stage::Done);
    ack(myself, state).await
}

fn result_properties(kind: &str, job_id: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("x-qrank-job-id".into(), AMQPValue::LongString(job_id.into()));
    BasicProperties::default()
        .with_type(kind.into())
        .with_content_type(protos::CONTENT_TYPE.into())
        .with_delivery_mode(2)
        .with_message_id(job_id.into())
        .with_correlation_id(job_id.into())
        .with_headers(headers)
}

pub(super) async fn publish_result(state: &State, payload: Vec<u8>) -> Result<()> {
    let outgoing = Outgoing {
        exchange: state.ctx.config.amqp.exchange.clone(),
        routing_key: state.spec.reply_routing_key.clone(),
        payload,
        properties: result_properties(protos::message_type::RANK_RESULT, &state.spec.job_id),
    };
    publish_confirmed(outgoing)
        .await
        .map_err(|e| anyhow!("publishing the result: {e}"))
}

/// Publish progress, when the job asked for it; best effort, nothing waits for the confirm.
pub(super) fn progress(state: &State, stage: v1::Stage) {
    let (Some(routing_key), Some(publisher)) = (&state.spec.progress_routing_key, lookup::<PublisherMsg>(PUBLISHER))
    else {
        return;
    };
    let message = RankProgress {
        job_id: state.spec.job_id.clone(),
        stage: stage as i32,
        num_images_listed: state.num_listed,
        num_images_loaded: state.num_loaded,
        num_groups_done: state.num_groups,
        num_groups_planned: state.num_groups_planned,
    };
    let outgoing = Outgoing {
        exchange: state.ctx.config.amqp.exchange.clone(),
        routing_key: routing_key.clone(),
        payload: message.encode_to_vec(),
        properties: result_properties(protos::message_type::RANK_PROGRESS, &state.spec.job_id),
    };
    let _ = publisher.cast(PublisherMsg::Publish(Box::new(outgoing), None));
}

pub(super) fn reply_locally(
    myself: &ActorRef<CoordinatorMsg>,
    state: &mut State,
    report: Result<Report, String>,
) -> Result<()> {
    state.done = true;
    myself.stop(None);
    if let Some(Reply::Local { report: reply, .. }) = state.reply.take() {
        let _ = reply.send(report);
    }
    Ok(())
}

pub(super) async fn ack(myself: &ActorRef<CoordinatorMsg>, state: &mut State) -> Result<()> {
    state.done = true;
    state
        .ctx
        .metrics
        .job_duration
        .observe(state.started.elapsed().as_secs_f64());
    myself.stop(None);
    if let Some(Reply::Broker { acker, .. }) = &state.reply {
        acker
            .ack(BasicAckOptions::default())
            .await
            .context("acking the job (it will be redelivered and its result republished)")?;
    }
    Ok(())
}

pub(super) async fn nack(myself: &ActorRef<CoordinatorMsg>, state: &mut State) {
    state.done = true;
    myself.stop(None);
    let requeue = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    if let Some(Reply::Broker { acker, .. }) = &state.reply {
        if let Err(e) = acker.nack(requeue).await {
            tracing::warn!(error = %e, "nack failed; the broker requeues the job when the connection closes");
        }
    }
}
