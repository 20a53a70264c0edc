//! The broker connection: declare the topology, consume jobs, hand a confirming channel to the
//! publisher, and reconnect with exponential backoff whenever the broker goes away.
//!
//! One task owns the connection. It forwards each delivery to the job source actor, and it
//! obeys a [`Control`] signal: `Draining` cancels the consumer (in-flight jobs can still be
//! acked), `Closing` closes the connection, which returns any unacked job to the queue.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use ractor::ActorRef;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

use crate::actors::job_source::JobSourceMsg;
use crate::actors::publisher::PublisherMsg;
use crate::config::{redact_url, AmqpConfig};

use super::Context as ServiceContext;

/// What the connection task should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Consume,
    Draining,
    Closing,
}

/// Declare the exchanges and queues of `protos/README.md`. Idempotent.
pub async fn declare_topology(channel: &Channel, amqp: &AmqpConfig) -> Result<()> {
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let durable_queue = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .exchange_declare(
            amqp.exchange.as_str().into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await
        .context("declaring the job exchange")?;
    channel
        .exchange_declare(
            amqp.dead_letter_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange,
            FieldTable::default(),
        )
        .await
        .context("declaring the dead-letter exchange")?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(amqp.dead_letter_exchange.as_str().into()),
    );
    channel
        .queue_declare(amqp.queue.as_str().into(), durable_queue, arguments)
        .await
        .context("declaring the job queue")?;
    channel
        .queue_bind(
            amqp.queue.as_str().into(),
            amqp.exchange.as_str().into(),
            amqp.queue.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("binding the job queue")?;
    channel
        .queue_declare(
            amqp.dead_letter_queue.as_str().into(),
            durable_queue,
            FieldTable::default(),
        )
        .await
        .context("declaring the dead-letter queue")?;
    channel
        .queue_bind(
            amqp.dead_letter_queue.as_str().into(),
            amqp.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("binding the dead-letter queue")?;
    Ok(())
}

/// Why consuming stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The connection or the consumer failed: reconnect.
    Lost,
    /// Draining began: stop consuming, keep the connection for the in-flight acks.
    Draining,
    /// The job source actor is gone (it crashed and a new one runs its own connection).
    SourceGone,
}

/// A live connection, ready to consume.
struct Session {
    connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    consumer_tag: String,
}

async fn open_session(ctx: &ServiceContext, publisher: &ActorRef<PublisherMsg>) -> Result<Session> {
    let amqp = &ctx.config.amqp;
    let connection = Connection::connect(
        &amqp.url,
        ConnectionProperties::default().with_connection_name(format!("qrank serve {}", std::process::id()).into()),
    )
    .await
    .with_context(|| format!("connecting to {}", redact_url(&amqp.url)))?;
    let channel = connection.create_channel().await?;
    declare_topology(&channel, amqp).await?;
    channel
        .basic_qos(amqp.prefetch, BasicQosOptions::default())
        .await
        .context("setting the prefetch")?;
    let publishing = connection.create_channel().await?;
    publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("enabling publisher confirms")?;
    publisher
        .cast(PublisherMsg::Connected(publishing))
        .context("the publisher is gone")?;
    let consumer_tag = format!("qrank-{}-{}", std::process::id(), rand_suffix());
    let consumer = channel
        .basic_consume(
            amqp.queue.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("consuming the job queue")?;
    Ok(Session {
        connection,
        channel,
        consumer,
        consumer_tag,
    })
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000
}

/// Run the connection until told to close, or until the job source is gone.
pub async fn run(
    ctx: ServiceContext,
    job_source: ActorRef<JobSourceMsg>,
    publisher: ActorRef<PublisherMsg>,
    mut control: watch::Receiver<Control>,
) {
    let amqp = ctx.config.amqp.clone();
    let min_backoff = Duration::from_millis(amqp.reconnect_min_backoff_ms);
    let max_backoff = Duration::from_millis(amqp.reconnect_max_backoff_ms);
    let mut backoff = min_backoff;
    loop {
        let consuming = *control.borrow() == Control::Consume;
        if !consuming {
            // Told to drain or close while not connected: nothing to cancel or ack.
            return;
        }
        match open_session(&ctx, &publisher).await {
            Ok(mut session) => {
                backoff = min_backoff;
                set_connected(&ctx, true);
                tracing::info!(queue = %amqp.queue, prefetch = amqp.prefetch, "consuming jobs");
                let ended = consume(&mut session, &job_source, &mut control).await;
                set_connected(&ctx, false);
                if ended == Ended::SourceGone {
                    let _ = session.connection.close(200, "job source restarted".into()).await;
                    return;
                }
                if ended == Ended::Draining {
                    // Draining: keep the connection for the in-flight acks until told to close.
                    let _ = control.wait_for(|c| *c == Control::Closing).await;
                    let _ = session.connection.close(200, "shutting down".into()).await;
                    return;
                }
                ctx.metrics.amqp_reconnects.inc();
                let _ = session.connection.close(200, "reconnecting".into()).await;
                tracing::warn!("lost the broker connection; reconnecting");
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                backoff_ms = backoff.as_millis() as u64,
                "broker unavailable"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            gone = stop_requested(&mut control) => {
                if gone {
                    return; // The job source is gone.
                }
            }
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

/// Forward deliveries until the connection is lost, draining starts or the job source is gone.
async fn consume(
    session: &mut Session,
    job_source: &ActorRef<JobSourceMsg>,
    control: &mut watch::Receiver<Control>,
) -> Ended {
    loop {
        tokio::select! {
            delivery = session.consumer.next() => match delivery {
                Some(Ok(delivery)) => {
                    if job_source.cast(JobSourceMsg::Delivery(Box::new(delivery))).is_err() {
                        // Closing the connection returns this delivery and any unacked job.
                        tracing::warn!("job source gone; closing the broker connection");
                        return Ended::SourceGone;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer failed");
                    return Ended::Lost;
                }
                None => return Ended::Lost,
            },
            gone = stop_requested(control) => {
                if gone {
                    return Ended::SourceGone;
                }
                let cancel = session
                    .channel
                    .basic_cancel(session.consumer_tag.as_str().into(), BasicCancelOptions::default())
                    .await;
                if let Err(e) = cancel {
                    tracing::warn!(error = %e, "cancelling the consumer");
                }
                tracing::info!("stopped consuming jobs");
                return Ended::Draining;
            }
        }
    }
}

/// Wait until told to stop consuming; true when the job source (the sender) is gone instead.
async fn stop_requested(control: &mut watch::Receiver<Control>) -> bool {
    control.wait_for(|c| *c != Control::Consume).await.is_err()
}

fn set_connected(ctx: &ServiceContext, connected: bool) {
    ctx.health.broker_connected.store(connected, Ordering::Relaxed);
    ctx.metrics.amqp_connected.set(i64::from(connected));
}
