//! The broker connection: declare the topology, consume jobs, hand a confirming channel to the
//! publisher, and reconnect with exponential backoff whenever the broker goes away.
//!
//! One task owns the connection. It forwards each job delivery to the job source actor, each
//! shared-group task to the group server, and each answer to a shared group to the job waiting
//! for it (`service::shared_groups`), and it obeys a [`Control`] signal: `Draining` cancels the
//! job and group consumers (in-flight jobs can still be acked, and still receive answers),
//! `Closing` closes the connection, which returns any unacked job or group task to its queue.
//!
//! It also stops taking jobs and shared groups while the model fails on every device
//! (`Health::model_broken`), so that they wait in their queues for a working replica instead of
//! failing here until Kubernetes restarts this one, and starts again if the model recovers.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
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

use super::work_queue::{unique_suffix, WorkQueue};
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

/// A live connection.
struct Session {
    connection: Connection,
    jobs: WorkQueue,
    /// Shared-group tasks, when this replica serves them: on a channel of their own, for their
    /// own prefetch.
    groups: Option<WorkQueue>,
    /// Answers to this replica's shared groups, when it shares any.
    replies: Option<lapin::Consumer>,
}

impl Session {
    /// Take jobs and shared groups (a queue already taken from is left as it is).
    async fn start_taking_work(&mut self, ctx: &ServiceContext) -> Result<()> {
        self.jobs.start().await?;
        if let Some(groups) = &mut self.groups {
            groups.start().await?;
        }
        ctx.metrics.amqp_consuming.set(1);
        Ok(())
    }

    /// Take no more jobs or shared groups; the ones taken can still be acked.
    async fn stop_taking_work(&mut self, ctx: &ServiceContext) {
        ctx.metrics.amqp_consuming.set(0);
        self.jobs.stop().await;
        if let Some(groups) = &mut self.groups {
            groups.stop().await;
        }
    }
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
    let jobs = WorkQueue::new(channel, &amqp.queue, "jobs");
    let groups = if ctx.config.scale.serve_shared_groups && ctx.compares_groups() {
        Some(groups_queue(&connection, ctx).await?)
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
        jobs,
        groups,
        replies,
    })
}

/// The queue of shared-group tasks, taken `scale.shared_groups_prefetch` at a time.
async fn groups_queue(connection: &Connection, ctx: &ServiceContext) -> Result<WorkQueue> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(ctx.config.scale.shared_groups_prefetch, BasicQosOptions::default())
        .await
        .context("setting the shared groups prefetch")?;
    Ok(WorkQueue::new(channel, &ctx.config.amqp.groups_queue, "shared groups"))
}

/// This connection's reply queue for answers to shared groups: server-named, exclusive, gone
/// with the connection. Answers are not acked: one lost is asked for again.
async fn consume_replies(connection: &Connection, ctx: &ServiceContext) -> Result<lapin::Consumer> {
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
    let tag = format!("qrank-replies-{}", unique_suffix());
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
    Ok(consumer)
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
    let mut model_broken = ctx.health.model_broken.subscribe();
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
                let ended = consume(&ctx, &mut session, &job_source, &mut control, &mut model_broken).await;
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

/// Forward deliveries until the connection is lost, draining starts or the job source is gone,
/// taking work only while the model works on some device.
async fn consume(
    ctx: &ServiceContext,
    session: &mut Session,
    job_source: &ActorRef<JobSourceMsg>,
    control: &mut watch::Receiver<Control>,
    model_broken: &mut watch::Receiver<bool>,
) -> Ended {
    let broken = *model_broken.borrow_and_update();
    if follow_the_model(ctx, session, broken).await.is_err() {
        return Ended::Lost;
    }
    loop {
        tokio::select! {
            task = or_never(session.groups.as_mut().map(WorkQueue::next)) => match task {
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
            answer = or_never(session.replies.as_mut().map(StreamExt::next)) => match answer {
                Some(Ok(answer)) => ctx.shared_groups.route(&answer),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "reply consumer failed");
                    return Ended::Lost;
                }
                None => return Ended::Lost,
            },
            delivery = session.jobs.next() => match delivery {
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
            // The sender lives in the service's context, which outlives this task.
            Ok(()) = model_broken.changed() => {
                let broken = *model_broken.borrow_and_update();
                if follow_the_model(ctx, session, broken).await.is_err() {
                    return Ended::Lost;
                }
            }
            gone = stop_requested(control) => {
                if gone {
                    return Ended::SourceGone;
                }
                session.stop_taking_work(ctx).await;
                tracing::info!("stopped consuming jobs");
                return Ended::Draining;
            }
        }
    }
}

/// Take work while the model works on some device, and none while it is `broken` on all.
async fn follow_the_model(ctx: &ServiceContext, session: &mut Session, broken: bool) -> Result<()> {
    let amqp = &ctx.config.amqp;
    if broken {
        if session.jobs.taking() {
            session.stop_taking_work(ctx).await;
            tracing::error!(
                queue = %amqp.queue,
                "the model fails on every device: taking no jobs or shared groups until it works \
                 again or the pod restarts"
            );
        }
        return Ok(());
    }
    if session.jobs.taking() {
        return Ok(());
    }
    if let Err(e) = session.start_taking_work(ctx).await {
        tracing::warn!(error = format!("{e:#}"), "could not take work from the broker");
        return Err(e);
    }
    tracing::info!(queue = %amqp.queue, prefetch = amqp.prefetch, "consuming jobs");
    Ok(())
}

/// What `next` gives; never, when there is no `next` (a replica that serves no shared groups,
/// or shares none, has no such consumer).
async fn or_never<T>(next: Option<impl std::future::Future<Output = T>>) -> T {
    match next {
        Some(next) => next.await,
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
            answer = or_never(session.replies.as_mut().map(StreamExt::next)) => match answer {
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
    if !connected {
        ctx.metrics.amqp_consuming.set(0);
    }
}
