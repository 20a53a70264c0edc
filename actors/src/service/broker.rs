//! The broker connection: declare the topology, consume jobs, hand a confirming channel to the
//! publisher, and reconnect with exponential backoff whenever the broker goes away.
//!
//! One task owns the connection. It forwards each job delivery to the job source actor, each
//! shared-group task to the group server, and each answer to a shared group to the job waiting
//! for it (`service::shared_groups`), and it obeys a [`Control`] signal: `Draining` cancels the
//! job and group consumers (in-flight jobs can still be acked, and still receive answers),
//! `Closing` closes the connection, which returns any unacked job or group task to its queue.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use ractor::ActorRef;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

use crate::actors::group_server::GroupServerMsg;
use crate::actors::job_source::JobSourceMsg;
use crate::actors::publisher::PublisherMsg;
use crate::actors::{lookup, GROUP_SERVER};
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
    channel
        .queue_declare(amqp.queue.as_str().into(), durable_queue, dead_lettered(amqp))
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
    channel
        .queue_declare(amqp.groups_queue.as_str().into(), durable_queue, dead_lettered(amqp))
        .await
        .context("declaring the shared groups queue")?;
    Ok(())
}

/// Queue arguments that send what a consumer rejects to the dead-letter exchange.
fn dead_lettered(amqp: &AmqpConfig) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(amqp.dead_letter_exchange.as_str().into()),
    );
    arguments
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
    /// Shared-group tasks, when this replica serves them: on a channel of their own, for their
    /// own prefetch.
    groups: Option<Consuming>,
    /// Answers to this replica's shared groups, when it shares any.
    replies: Option<Consuming>,
}

/// A consumer and the channel it runs on.
struct Consuming {
    channel: Channel,
    consumer: lapin::Consumer,
    tag: String,
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
    let groups = if ctx.config.scale.serve_shared_groups && ctx.compares_groups() {
        Some(consume_groups(&connection, ctx).await?)
    } else {
        None
    };
    let replies = if ctx.config.scale.share_groups_from_images > 0 {
        Some(consume_replies(&connection, ctx).await?)
    } else {
        None
    };
    Ok(Session {
        connection,
        channel,
        consumer,
        consumer_tag,
        groups,
        replies,
    })
}

/// Take shared-group tasks, `scale.shared_groups_prefetch` at a time.
async fn consume_groups(connection: &Connection, ctx: &ServiceContext) -> Result<Consuming> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(ctx.config.scale.shared_groups_prefetch, BasicQosOptions::default())
        .await
        .context("setting the shared groups prefetch")?;
    let tag = format!("qrank-groups-{}-{}", std::process::id(), rand_suffix());
    let consumer = channel
        .basic_consume(
            ctx.config.amqp.groups_queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .context("consuming the shared groups queue")?;
    Ok(Consuming { channel, consumer, tag })
}

/// This connection's reply queue for answers to shared groups: server-named, exclusive, gone
/// with the connection. Answers are not acked: one lost is asked for again.
async fn consume_replies(connection: &Connection, ctx: &ServiceContext) -> Result<Consuming> {
    let channel = connection.create_channel().await?;
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare("".into(), exclusive, FieldTable::default())
        .await
        .context("declaring the reply queue")?;
    let tag = format!("qrank-replies-{}-{}", std::process::id(), rand_suffix());
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let consumer = channel
        .basic_consume(
            queue.name().as_str().into(),
            tag.as_str().into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .context("consuming the reply queue")?;
    ctx.shared_groups.set_reply_queue(Some(queue.name().to_string()));
    Ok(Consuming { channel, consumer, tag })
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
                let ended = consume(&ctx, &mut session, &job_source, &mut control).await;
                set_connected(&ctx, false);
                if ended == Ended::SourceGone {
                    ctx.shared_groups.set_reply_queue(None);
                    let _ = session.connection.close(200, "job source restarted".into()).await;
                    return;
                }
                if ended == Ended::Draining {
                    // Draining: keep the connection for the in-flight acks, and the answers to
                    // in-flight jobs' shared groups, until told to close.
                    route_replies_until_closing(&ctx, &mut session, &mut control).await;
                    ctx.shared_groups.set_reply_queue(None);
                    let _ = session.connection.close(200, "shutting down".into()).await;
                    return;
                }
                ctx.shared_groups.set_reply_queue(None);
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
    ctx: &ServiceContext,
    session: &mut Session,
    job_source: &ActorRef<JobSourceMsg>,
    control: &mut watch::Receiver<Control>,
) -> Ended {
    loop {
        tokio::select! {
            task = next_delivery(&mut session.groups) => match task {
                Some(Ok(task)) => match lookup::<GroupServerMsg>(GROUP_SERVER) {
                    Some(server) => {
                        let _ = server.cast(GroupServerMsg::Delivery(Box::new(task)));
                    }
                    // Between a crash and the restart: the task goes back to the queue.
                    None => {
                        let _ = task.acker.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                    }
                },
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "shared groups consumer failed");
                    return Ended::Lost;
                }
                None => return Ended::Lost,
            },
            answer = next_delivery(&mut session.replies) => match answer {
                Some(Ok(answer)) => ctx.shared_groups.route(&answer),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reply consumer failed");
                    return Ended::Lost;
                }
                None => return Ended::Lost,
            },
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
                if let Some(groups) = &session.groups {
                    let cancel = groups.channel.basic_cancel(groups.tag.as_str().into(), BasicCancelOptions::default()).await;
                    if let Err(e) = cancel {
                        tracing::warn!(error = %e, "cancelling the shared groups consumer");
                    }
                }
                tracing::info!("stopped consuming jobs");
                return Ended::Draining;
            }
        }
    }
}

/// The next delivery of an optional consumer; never, when there is none.
async fn next_delivery(consuming: &mut Option<Consuming>) -> Option<lapin::Result<lapin::message::Delivery>> {
    match consuming {
        Some(consuming) => consuming.consumer.next().await,
        None => std::future::pending().await,
    }
}

/// While draining: route answers to the jobs still in flight until told to close (or the
/// connection goes).
async fn route_replies_until_closing(
    ctx: &ServiceContext,
    session: &mut Session,
    control: &mut watch::Receiver<Control>,
) {
    loop {
        tokio::select! {
            answer = next_delivery(&mut session.replies) => match answer {
                Some(Ok(answer)) => ctx.shared_groups.route(&answer),
                _ => break,
            },
            _ = control.wait_for(|c| *c == Control::Closing) => break,
        }
    }
    let _ = control.wait_for(|c| *c == Control::Closing).await;
}

/// Wait until told to stop consuming; true when the job source (the sender) is gone instead.
async fn stop_requested(control: &mut watch::Receiver<Control>) -> bool {
    control.wait_for(|c| *c != Control::Consume).await.is_err()
}

fn set_connected(ctx: &ServiceContext, connected: bool) {
    ctx.health.broker_connected.store(connected, Ordering::Relaxed);
    ctx.metrics.amqp_connected.set(i64::from(connected));
}
