//! One image loader of the pool: fetch (with retries), decode and prepare one image at a time.
//! The pool's size bounds how many images are fetched at once across all jobs; decoding runs on
//! the blocking pool. Every failure goes back to the coordinator as that image's error.

use std::time::Instant;

use engine::image::{Image, Limits};
use object_store::ObjectMeta;
use ractor::{Actor, ActorProcessingErr, ActorRef};

use super::coordinator::CoordinatorMsg;
use crate::pipeline::FileError;
use crate::service::Context;
use crate::source::Source;

/// Load one listed object for a job.
pub struct Load {
    pub source: Source,
    pub meta: ObjectMeta,
    pub reply_to: ActorRef<CoordinatorMsg>,
}

pub struct Loader;

impl Actor for Loader {
    type Msg = Load;
    type State = Context;
    type Arguments = Context;

    async fn pre_start(&self, _myself: ActorRef<Load>, ctx: Context) -> Result<Context, ActorProcessingErr> {
        Ok(ctx)
    }

    async fn handle(&self, _myself: ActorRef<Load>, load: Load, ctx: &mut Context) -> Result<(), ActorProcessingErr> {
        let name = load.source.display_name(&load.meta.location);
        let image = load_one(ctx, &load.source, &load.meta, &name).await;
        // Failures are counted by the coordinator, with the listing's own.
        if image.is_ok() {
            ctx.metrics.images_loaded.inc();
        }
        let _ = load.reply_to.cast(CoordinatorMsg::Loaded(load.meta.location, image));
        Ok(())
    }
}

/// Fetch, decode and prepare one image for `ctx`'s comparator; the group server reads the images
/// of shared groups this way too.
pub async fn load_one(ctx: &Context, source: &Source, meta: &ObjectMeta, name: &str) -> Result<Image, FileError> {
    let limits = Limits {
        max_bytes: ctx.config.pipeline.max_image_bytes,
        max_pixels: ctx.config.pipeline.max_image_pixels,
        ..Limits::default()
    };
    let started = Instant::now();
    let bytes = crate::load::fetch(source, meta, name, &limits, ctx.config.pipeline.fetch_attempts).await?;
    ctx.metrics.image_fetch.observe(started.elapsed().as_secs_f64());
    let (comparator, owned_name) = (ctx.comparators.primary().clone(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        crate::load::decode_image(&owned_name, bytes.as_ref(), &limits).map(|image| comparator.prepare(image))
    })
    .await
    .unwrap_or_else(|panic| {
        Err(FileError {
            name: name.to_owned(),
            kind: "corrupt",
            reason: format!("{name}: decoder panicked: {panic}"),
        })
    })
}
