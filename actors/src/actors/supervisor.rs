//! The root of the long-lived actors. It starts them downstream first (publisher, ranker,
//! inference worker, loaders, group server, then the job source that feeds them), restarts any
//! that crashes under the same registered name, and counts restarts by role. `qrank rank` starts
//! the same tree without the broker's three (publisher, group server and job source).

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};

use super::group_server::GroupServer;
use super::inference::InferenceWorker;
use super::job_source::JobSource;
use super::loader::Loader;
use super::publisher::Publisher;
use super::ranker::Ranker;
use super::{loader_name, GROUP_SERVER, INFERENCE, JOB_SOURCE, PUBLISHER, RANKER};
use crate::service::Context;

/// Wait before retrying a restart that failed (e.g. the old name not yet released).
const RESPAWN_RETRY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Ranker,
    Inference,
    Loader(usize),
    GroupServer,
    JobSource,
}

impl Role {
    /// The `actor` label of `qrank_actor_restarts_total`.
    fn label(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Ranker => "ranker",
            Role::Inference => "inference",
            Role::Loader(_) => "loader",
            Role::GroupServer => "group_server",
            Role::JobSource => "job_source",
        }
    }
}

pub enum SupervisorMsg {
    Respawn(Role),
}

pub struct Supervisor;

pub struct Arguments {
    pub ctx: Context,
    /// Start the publisher and the job source (`qrank serve`), not only the pipeline.
    pub with_broker: bool,
}

pub struct State {
    ctx: Context,
    children: HashMap<ActorId, Role>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(&self, myself: ActorRef<SupervisorMsg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        let mut state = State {
            ctx: args.ctx,
            children: HashMap::new(),
        };
        let loaders = (0..state.ctx.config.pipeline.num_loaders).map(Role::Loader);
        let roles = [Role::Publisher, Role::Ranker, Role::Inference]
            .into_iter()
            .chain(loaders)
            .chain([Role::GroupServer, Role::JobSource])
            .filter(|role| args.with_broker || !matches!(role, Role::Publisher | Role::GroupServer | Role::JobSource));
        for role in roles {
            // Its restarts' series, at 0 until the first, so that the first counts in `increase()`.
            state.ctx.metrics.actor_restarts.with_label_values(&[role.label()]);
            let id = spawn(&myself, &state.ctx, role).await?;
            state.children.insert(id, role);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        SupervisorMsg::Respawn(role): SupervisorMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match spawn(&myself, &state.ctx, role).await {
            Ok(id) => {
                state.children.insert(id, role);
            }
            Err(e) => {
                tracing::warn!(actor = role.label(), error = %e, "restart failed; retrying");
                myself.send_after(RESPAWN_RETRY, move || SupervisorMsg::Respawn(role));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(role) = state.children.remove(&cell.get_id()) {
                    tracing::error!(actor = role.label(), error = %error, "actor crashed; restarting it");
                    state
                        .ctx
                        .metrics
                        .actor_restarts
                        .with_label_values(&[role.label()])
                        .inc();
                    myself.cast(SupervisorMsg::Respawn(role))?;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                // Children stop normally only at shutdown.
                state.children.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

async fn spawn(myself: &ActorRef<SupervisorMsg>, ctx: &Context, role: Role) -> Result<ActorId, ActorProcessingErr> {
    let supervisor = myself.get_cell();
    let args = ctx.clone();
    let id = match role {
        Role::Publisher => Actor::spawn_linked(Some(PUBLISHER.into()), Publisher, args, supervisor)
            .await?
            .0
            .get_id(),
        Role::Ranker => Actor::spawn_linked(Some(RANKER.into()), Ranker, args, supervisor)
            .await?
            .0
            .get_id(),
        Role::Inference => Actor::spawn_linked(Some(INFERENCE.into()), InferenceWorker, args, supervisor)
            .await?
            .0
            .get_id(),
        Role::Loader(index) => Actor::spawn_linked(Some(loader_name(index)), Loader, args, supervisor)
            .await?
            .0
            .get_id(),
        Role::GroupServer => Actor::spawn_linked(Some(GROUP_SERVER.into()), GroupServer, args, supervisor)
            .await?
            .0
            .get_id(),
        Role::JobSource => Actor::spawn_linked(Some(JOB_SOURCE.into()), JobSource, args, supervisor)
            .await?
            .0
            .get_id(),
    };
    Ok(id)
}
