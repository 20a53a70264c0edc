//! One ranking run: list the source, fetch and decode with bounded concurrency, then rank.
//!
//! A comparator that scores images one at a time is asked once per image while loading, and the
//! decoded pixels are dropped at once. A comparator that only compares keeps each image in its
//! prepared (smaller) form, and the engine's [`Job`] plans the groups and fits the answers. Both
//! kinds go through this one function, so the CLI and the service rank the same way.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use engine::compare::{Comparator, Criterion};
use engine::image::{Image, Limits};
use engine::job::{Job, JobOptions};
use engine::rank::Ranking;
use futures::TryStreamExt;
use object_store::ObjectMeta;

use crate::source::Source;

/// An image that could not be used, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FileError {
    pub name: String,
    /// A fixed label: empty, unsupported, truncated, over_limit, corrupt, fetch or model.
    pub kind: &'static str,
    pub reason: String,
}

/// Counts of the work done.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Stats {
    pub num_images: usize,
    pub num_model_calls: usize,
    pub seconds: f64,
}

/// What a run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub model: String,
    pub ranking: Ranking,
    pub errors: Vec<FileError>,
    pub stats: Stats,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub recursive: bool,
    pub concurrency: usize,
    pub limits: Limits,
    pub job: JobOptions,
    /// What a comparator is asked about each group.
    pub criterion: Criterion,
}

/// Progress callbacks, so the CLI can draw bars and the service can count.
pub trait Progress: Send + Sync {
    fn loaded(&self, name: &str);
    fn comparisons_planned(&self, total: usize);
    fn compared(&self);
}

/// Attempts to fetch one image before reporting it.
const FETCH_ATTEMPTS: u32 = 3;

/// A loaded image: its direct score, or the prepared image for comparisons.
enum Loaded {
    Scored(String, f64),
    Prepared(Image),
}

/// Rank every image under `source` with `comparator`.
pub async fn run(
    source: &Source,
    comparator: Arc<dyn Comparator>,
    options: &RunOptions,
    progress: Arc<dyn Progress>,
) -> Result<Report> {
    let started = Instant::now();
    let results: Vec<Result<Loaded, FileError>> = source
        .list(options.recursive)
        .map_err(anyhow::Error::from)
        .map_ok(|meta| {
            let (comparator, progress) = (comparator.clone(), progress.clone());
            async move {
                let name = source.display_name(&meta.location);
                let loaded = load(source, &meta, &name, comparator, options.limits).await;
                progress.loaded(&name);
                Ok::<_, anyhow::Error>(loaded)
            }
        })
        .try_buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await
        .with_context(|| format!("listing {}", source.url()))?;

    let mut errors = Vec::new();
    let mut scored = Vec::new();
    let mut prepared = Vec::new();
    for result in results {
        match result {
            Ok(Loaded::Scored(name, score)) => scored.push((name, score)),
            Ok(Loaded::Prepared(image)) => prepared.push(image),
            Err(e) => errors.push(e),
        }
    }
    errors.sort_by(|a, b| a.name.cmp(&b.name));
    let num_images = scored.len() + prepared.len();

    let (ranking, num_model_calls) = if comparator.scores_directly() {
        let (names, scores): (Vec<String>, Vec<f64>) = scored.into_iter().unzip();
        (Ranking::from_scores(&names, &scores), names.len())
    } else {
        let (job_options, criterion, comparator) = (options.job.clone(), options.criterion.clone(), comparator.clone());
        tokio::task::spawn_blocking(move || {
            compare_all(
                prepared,
                comparator.as_ref(),
                job_options,
                &criterion,
                progress.as_ref(),
            )
        })
        .await
        .context("comparison task panicked")?
    };
    Ok(Report {
        model: comparator.model_id(),
        ranking,
        errors,
        stats: Stats {
            num_images,
            num_model_calls,
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// Fetch, decode and score or prepare one object. Blocking work runs off the async threads.
async fn load(
    source: &Source,
    meta: &ObjectMeta,
    name: &str,
    comparator: Arc<dyn Comparator>,
    limits: Limits,
) -> Result<Loaded, FileError> {
    let bytes = crate::load::fetch(source, meta, name, &limits, FETCH_ATTEMPTS).await?;
    let (name, panicked_name) = (name.to_owned(), name.to_owned());
    tokio::task::spawn_blocking(move || {
        let image = crate::load::decode_image(&name, bytes.as_ref(), &limits)?;
        drop(bytes);
        if comparator.scores_directly() {
            let score = comparator.score(&image).map_err(|e| FileError {
                name: name.clone(),
                kind: "model",
                reason: e.to_string(),
            })?;
            Ok(Loaded::Scored(name, score))
        } else {
            Ok(Loaded::Prepared(comparator.prepare(image)))
        }
    })
    .await
    .unwrap_or_else(|panic| {
        Err(FileError {
            reason: format!("{panicked_name}: decoder panicked: {panic}"),
            name: panicked_name,
            kind: "model",
        })
    })
}

/// The comparison path: plan rounds, ask the comparator, fit. A failed group is skipped (its
/// images still appear in other groups); it never fails the run.
fn compare_all(
    mut images: Vec<Image>,
    comparator: &dyn Comparator,
    options: JobOptions,
    criterion: &Criterion,
    progress: &dyn Progress,
) -> (Ranking, usize) {
    images.sort_by(|a, b| a.name.cmp(&b.name));
    let names = images.iter().map(|image| image.name.clone()).collect();
    let mut job = Job::new(names, options);
    progress.comparisons_planned(job.calls_budget());
    let mut calls = 0;
    loop {
        let groups = job.next_round();
        if groups.is_empty() {
            break;
        }
        for group in groups {
            let members: Vec<&Image> = group.items.iter().map(|&i| &images[i as usize]).collect();
            calls += 1;
            match comparator.compare(&members, criterion) {
                Ok(outcome) => {
                    if let Err(e) = job.record(&group, &outcome) {
                        tracing::warn!(error = %e, "comparator answer rejected");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "comparison failed"),
            }
            progress.compared();
        }
    }
    (job.ranking(), calls)
}
