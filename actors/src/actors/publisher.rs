//! Publishes results, progress and dead letters with publisher confirms.
//!
//! The broker task hands it a fresh confirming channel after every (re)connect. Waiting for a
//! confirm happens in a task of its own, so one slow confirm never holds up the next publish.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::{lookup, PUBLISHER};
use crate::service::metrics::Published;
use crate::service::Context;

/// How long a publish waits for the broker's confirm.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Publish through the running publisher and wait for the broker's confirm; the error says why
/// there is none.
pub async fn publish_confirmed(outgoing: Outgoing) -> Result<(), String> {
    let publisher = lookup::<PublisherMsg>(PUBLISHER).ok_or("the publisher is not running")?;
    match publisher
        .call(
            |reply| PublisherMsg::Publish(Box::new(outgoing), Some(reply)),
            Some(CONFIRM_TIMEOUT),
        )
        .await
    {
        Ok(CallResult::Success(confirmed)) => confirmed,
        Ok(CallResult::Timeout) => Err("no confirm in time".into()),
        Ok(CallResult::SenderError) | Err(_) => Err("the publisher stopped".into()),
    }
}

/// One message to publish.
#[derive(Debug)]
pub struct Outgoing {
    pub exchange: String,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub properties: BasicProperties,
}

pub enum PublisherMsg {
    /// A new confirming channel, after a (re)connect.
    Connected(Channel),
    /// Publish, and answer once the broker confirmed it (or did not).
    Publish(Box<Outgoing>, Option<RpcReplyPort<Result<(), String>>>),
}

pub struct Publisher;

pub struct State {
    ctx: Context,
    channel: Option<Channel>,
}

impl Actor for Publisher {
    type Msg = PublisherMsg;
    type State = State;
    type Arguments = Context;

    async fn pre_start(&self, _myself: ActorRef<Self::Msg>, ctx: Context) -> Result<State, ActorProcessingErr> {
        Ok(State { ctx, channel: None })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PublisherMsg::Connected(channel) => state.channel = Some(channel),
            PublisherMsg::Publish(outgoing, reply) => {
                let outcome = match &state.channel {
                    None => Err("not connected to the broker".to_owned()),
                    Some(channel) => channel
                        .basic_publish(
                            outgoing.exchange.as_str().into(),
                            outgoing.routing_key.as_str().into(),
                            BasicPublishOptions::default(),
                            &outgoing.payload,
                            outgoing.properties,
                        )
                        .await
                        .map_err(|e| e.to_string()),
                };
                let metrics = state.ctx.metrics.clone();
                tokio::spawn(async move {
                    let confirmed = match outcome {
                        Ok(confirm) => match confirm.await {
                            Ok(confirmation) if confirmation.is_ack() => Ok(()),
                            Ok(_) => Err("the broker refused the message (nack)".to_owned()),
                            Err(e) => Err(format!("no confirm: {e}")),
                        },
                        Err(e) => Err(e),
                    };
                    metrics.published(if confirmed.is_ok() {
                        Published::Confirmed
                    } else {
                        Published::Failed
                    });
                    if let Some(reply) = reply {
                        let _ = reply.send(confirmed);
                    }
                });
            }
        }
        Ok(())
    }
}
