//! A queue this replica takes work from (jobs, or shared groups), on a channel of its own, that
//! it can stop taking from and start again without closing the channel.
//!
//! Closing the channel would be simpler, but the work already taken is acked on that channel
//! when done: closing it would return that work to the queue too, and it would be done twice.
//! So stopping cancels the consumer instead, and gives back what the broker had already sent
//! (up to the prefetch) but nobody had started.

use anyhow::{Context, Result};
use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};

pub struct WorkQueue {
    channel: Channel,
    queue: String,
    /// What the queue holds, for logs and errors: "jobs", "shared groups".
    what: &'static str,
    /// The consumer while taking work, with its tag.
    consumer: Option<(Consumer, String)>,
}

impl WorkQueue {
    /// A queue on `channel`, not yet taken from.
    pub fn new(channel: Channel, queue: &str, what: &'static str) -> Self {
        Self {
            channel,
            queue: queue.to_owned(),
            what,
            consumer: None,
        }
    }

    /// True while taking work from the queue.
    pub fn taking(&self) -> bool {
        self.consumer.is_some()
    }

    /// Take work from the queue; nothing when already taking.
    pub async fn start(&mut self) -> Result<()> {
        if self.taking() {
            return Ok(());
        }
        let tag = format!("qrank-{}-{}", self.what.replace(' ', "-"), unique_suffix());
        let consumer = self
            .channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming the {} queue {}", self.what, self.queue))?;
        self.consumer = Some((consumer, tag));
        Ok(())
    }

    /// Stop taking work, and return to the queue what the broker sent that was not handed out
    /// yet; nothing when not taking. Work handed out is unaffected: it is still acked here.
    pub async fn stop(&mut self) {
        let Some((mut consumer, tag)) = self.consumer.take() else {
            return;
        };
        if let Err(e) = self
            .channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await
        {
            // The channel is failing: closing it (on reconnection) returns everything anyway.
            tracing::warn!(error = %e, queue = %self.queue, "cancelling the {} consumer", self.what);
            return;
        }
        // After the broker confirms the cancel, the consumer ends once its buffer is empty.
        let requeue = BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        };
        let mut returned = 0;
        while let Some(Ok(delivery)) = consumer.next().await {
            if delivery.acker.nack(requeue).await.is_ok() {
                returned += 1;
            }
        }
        if returned > 0 {
            tracing::info!(returned, queue = %self.queue, "returned {} not yet started", self.what);
        }
    }

    /// The next delivery while taking work; never, while not.
    pub async fn next(&mut self) -> Option<lapin::Result<Delivery>> {
        match &mut self.consumer {
            Some((consumer, _)) => consumer.next().await,
            None => std::future::pending().await,
        }
    }
}

/// A suffix that keeps this process's consumer tags apart from its earlier ones and from other
/// replicas'.
pub fn unique_suffix() -> String {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(std::time::SystemTime::now()) % 1_000_000;
    format!("{}-{random}", std::process::id())
}
