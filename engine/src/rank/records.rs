//! Saved comparisons, so judgements can be re-scored without asking a model again.
//!
//! Two forms are read:
//! - our JSONL, one [`ComparisonRecord`] per line, which is also what the service checkpoints;
//! - a single JSON object in the reference-fit form (`kind`, `n_items`, `alpha`, `comparisons`)
//!   used by `shared/golden/bradley-terry`, with items named by their number.

use std::collections::HashMap;

use crate::compare::{Criterion, GroupOutcome, Stage};

use super::observations::{ObservationError, Observations};

/// One group's answer, as saved: the items in the slot order shown, and the stage outcomes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComparisonRecord {
    pub items: Vec<String>,
    pub stages: Vec<Stage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub criterion: Option<Criterion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Comparisons ready to fit, and the item names they refer to.
#[derive(Debug, Clone)]
pub struct ComparisonSet {
    pub names: Vec<String>,
    pub observations: Observations,
    /// The regularisation the file asks for (a reference fit's `alpha`), if any.
    pub alpha: Option<f64>,
    /// True when slot order is meaningful (our records). A reference file lists the winner
    /// first, so fitting a slot bias to it would be wrong.
    pub has_slots: bool,
    /// The models and questions the records say answered them, each once, in the order first
    /// met (`model: question`); empty for a reference file. More than one means answers to
    /// different things are fitted together.
    pub origins: Vec<String>,
}

/// Why saved comparisons could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("line {line}: {source}")]
    Json { line: usize, source: serde_json::Error },
    #[error("line {line}: {source}")]
    Invalid { line: usize, source: ObservationError },
    #[error("reference file: {0}")]
    Reference(String),
    #[error("no comparisons found")]
    Empty,
}

#[derive(serde::Deserialize)]
struct ReferenceFile {
    kind: String,
    n_items: usize,
    #[serde(default)]
    alpha: Option<f64>,
    comparisons: Vec<serde_json::Value>,
}

/// Parse either form, telling them apart by the reference file's `kind` key.
pub fn parse_comparisons(text: &str) -> Result<ComparisonSet, RecordError> {
    if let Ok(reference) = serde_json::from_str::<ReferenceFile>(text) {
        return parse_reference(reference);
    }
    parse_jsonl(text)
}

fn parse_jsonl(text: &str) -> Result<ComparisonSet, RecordError> {
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut observations = Observations::new(0);
    let mut origins = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = i + 1;
        let record: ComparisonRecord =
            serde_json::from_str(line).map_err(|source| RecordError::Json { line: line_no, source })?;
        let items: Vec<u32> = record
            .items
            .iter()
            .map(|name| {
                *index.entry(name.clone()).or_insert_with(|| {
                    names.push(name.clone());
                    names.len() as u32 - 1
                })
            })
            .collect();
        observations.ensure_items(names.len());
        let origin = origin(&record);
        if !origins.contains(&origin) {
            origins.push(origin);
        }
        let outcome = GroupOutcome { stages: record.stages };
        observations
            .push_outcome(&items, &outcome)
            .map_err(|source| RecordError::Invalid { line: line_no, source })?;
    }
    if names.is_empty() {
        return Err(RecordError::Empty);
    }
    Ok(ComparisonSet {
        names,
        observations,
        alpha: None,
        has_slots: true,
        origins,
    })
}

/// `model: question` of a record, for telling apart answers to different things.
fn origin(record: &ComparisonRecord) -> String {
    let model = record.model.as_deref().unwrap_or("an unnamed model");
    let question = match &record.criterion {
        Some(criterion) => serde_json::to_string(criterion).unwrap_or_default(),
        None => "an unnamed question".to_owned(),
    };
    format!("{model}: {question}")
}

fn parse_reference(file: ReferenceFile) -> Result<ComparisonSet, RecordError> {
    let mut observations = Observations::new(file.n_items);
    for (i, value) in file.comparisons.iter().enumerate() {
        let bad = |why: &str| RecordError::Reference(format!("comparison {i} ({value}): {why}"));
        let invalid = |source| RecordError::Invalid { line: i + 1, source };
        match file.kind.as_str() {
            "pairwise" => {
                let [w, l]: [u32; 2] =
                    serde_json::from_value(value.clone()).map_err(|_| bad("expected [winner, loser]"))?;
                observations.push_choice(w, &[l]).map_err(invalid)?;
            }
            "top1" => {
                let (w, losers): (u32, Vec<u32>) =
                    serde_json::from_value(value.clone()).map_err(|_| bad("expected [winner, [losers]]"))?;
                observations.push_choice(w, &losers).map_err(invalid)?;
            }
            "rankings" => {
                let order: Vec<u32> = serde_json::from_value(value.clone()).map_err(|_| bad("expected a ranking"))?;
                observations
                    .push_outcome(&order, &full_ranking(order.len()))
                    .map_err(invalid)?;
            }
            "soft_pairwise" => {
                let (a, b, p): (u32, u32, f64) =
                    serde_json::from_value(value.clone()).map_err(|_| bad("expected [i, j, p]"))?;
                let stage = Stage {
                    slots: vec![0, 1],
                    probs: vec![p, 1.0 - p],
                };
                observations
                    .push_outcome(&[a, b], &GroupOutcome { stages: vec![stage] })
                    .map_err(invalid)?;
            }
            other => return Err(RecordError::Reference(format!("unknown kind {other:?}"))),
        }
    }
    let names = (0..file.n_items).map(|i| i.to_string()).collect();
    Ok(ComparisonSet {
        names,
        observations,
        alpha: file.alpha,
        has_slots: false,
        origins: Vec::new(),
    })
}

/// Stages of a hard full ranking of a group whose slots are already in best-first order.
pub(crate) fn full_ranking(size: usize) -> GroupOutcome {
    let stages = (0..size.saturating_sub(1))
        .map(|first| {
            let slots: Vec<u8> = (first as u8..size as u8).collect();
            let mut probs = vec![0.0; slots.len()];
            probs[0] = 1.0;
            Stage { slots, probs }
        })
        .collect();
    GroupOutcome { stages }
}
