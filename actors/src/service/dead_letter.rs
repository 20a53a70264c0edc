//! Poison messages, job or shared group, go to the dead-letter exchange with their reason.

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicRejectOptions};
use lapin::types::AMQPValue;

use crate::actors::publisher::{publish_confirmed, Outgoing};

/// Re-publish a poison message to the dead-letter exchange with its `reason` and fixed `label`
/// in the headers `x-qrank-reason` and `x-qrank-error-type`, then ack it. If that publish fails,
/// reject it so the broker dead-letters it (without the reason).
pub async fn dead_letter(exchange: String, queue: String, delivery: Delivery, reason: String, label: &'static str) {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert("x-qrank-reason".into(), AMQPValue::LongString(reason.into()));
    headers.insert("x-qrank-error-type".into(), AMQPValue::LongString(label.into()));
    let outgoing = Outgoing {
        exchange,
        routing_key: queue,
        payload: delivery.data.clone(),
        properties: delivery.properties.clone().with_headers(headers),
    };
    let published = publish_confirmed(outgoing).await.is_ok();
    let settled = if published {
        delivery.acker.ack(BasicAckOptions::default()).await
    } else {
        delivery.acker.reject(BasicRejectOptions { requeue: false }).await
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "settling a poison message failed; it will be redelivered");
    }
}
