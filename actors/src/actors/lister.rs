//! Lists one job's images in batches, on demand. The listing is a stream that the coordinator
//! pulls a batch at a time, so a prefix with a million keys never sits in memory at once.
//! A job with an explicit key list is "listed" by looking each key up instead.

use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::coordinator::CoordinatorMsg;
use crate::pipeline::FileError;
use crate::source::{ListError, Source};

/// Objects per batch.
pub const BATCH: usize = 256;

pub enum ListerMsg {
    /// Send the coordinator the next batch (`Listed`), or `Listed` with `done` set.
    Next,
}

pub struct Lister;

pub struct Arguments {
    pub source: Source,
    pub recursive: bool,
    pub keys: Vec<String>,
    pub coordinator: ActorRef<CoordinatorMsg>,
}

pub struct State {
    source: Source,
    listing: Option<BoxStream<'static, Result<ObjectMeta, ListError>>>,
    keys: std::vec::IntoIter<String>,
    coordinator: ActorRef<CoordinatorMsg>,
}

impl Actor for Lister {
    type Msg = ListerMsg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(&self, _myself: ActorRef<ListerMsg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        let listing = args.keys.is_empty().then(|| args.source.list(args.recursive));
        Ok(State {
            source: args.source,
            listing,
            keys: args.keys.into_iter(),
            coordinator: args.coordinator,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ListerMsg>,
        _: ListerMsg,
        state: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let (batch, done) = match state.listing.as_mut() {
            Some(listing) => match next_listed(listing).await {
                Ok(batch) => {
                    let done = batch.len() < BATCH;
                    (batch, done)
                }
                Err(e) => {
                    let _ = state.coordinator.cast(CoordinatorMsg::ListFailed(e));
                    myself.stop(None);
                    return Ok(());
                }
            },
            None => {
                let keys: Vec<String> = state.keys.by_ref().take(BATCH).collect();
                let done = keys.len() < BATCH;
                (look_up(&state.source, keys).await, done)
            }
        };
        let _ = state.coordinator.cast(CoordinatorMsg::Listed(batch, done));
        if done {
            myself.stop(None);
        }
        Ok(())
    }
}

/// The next batch of the listing. An entry of a local folder that could not be read is reported
/// in the batch, as that entry's error, and the walk goes on; a failed listing fails the job.
async fn next_listed(
    listing: &mut BoxStream<'static, Result<ObjectMeta, ListError>>,
) -> Result<Vec<Result<ObjectMeta, FileError>>, String> {
    let mut batch = Vec::with_capacity(BATCH);
    while batch.len() < BATCH {
        match listing.next().await {
            Some(Ok(meta)) => batch.push(Ok(meta)),
            Some(Err(ListError::Entry { name, reason })) => batch.push(Err(FileError {
                name,
                kind: "list",
                reason,
            })),
            Some(Err(ListError::Listing(e))) => return Err(format!("listing the source: {e}")),
            None => break,
        }
    }
    Ok(batch)
}

/// Explicit keys: a `head` per key, so a missing key is reported as that image's error.
async fn look_up(source: &Source, keys: Vec<String>) -> Vec<Result<ObjectMeta, FileError>> {
    let mut found = Vec::with_capacity(keys.len());
    for key in keys {
        let location = match &source.prefix {
            Some(prefix) => Path::from(format!("{prefix}/{key}")),
            None => Path::from(key.as_str()),
        };
        let name = source.display_name(&location);
        found.push(source.store.head(&location).await.map_err(|e| FileError {
            name: name.clone(),
            kind: "fetch",
            reason: format!("{name}: {e}"),
        }));
    }
    found
}
