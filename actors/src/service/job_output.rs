//! A job's output prefix: its result (`result.json`, plus `result.pb` for republishing) and its
//! comparison checkpoints (`checkpoint/NNNNNN.jsonl`, one `ComparisonRecord` per line).
//!
//! Object stores cannot append, so each checkpoint flush writes a new numbered part; resuming
//! reads all parts in order. The result is written last and is what marks a job as done.

use anyhow::{Context, Result};
use engine::rank::ComparisonRecord;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use prost::Message;
use protos::v1::RankResult;

use crate::source::Source;

use super::wire::result_json;

const RESULT_JSON: &str = "result.json";
const RESULT_PB: &str = "result.pb";
const CHECKPOINT_DIR: &str = "checkpoint";
const WRITE_CHECK: &str = ".qrank-write-check";

/// The number of a checkpoint part, from its name `NNNNNN.jsonl`.
fn part_number(path: &Path) -> Option<u32> {
    path.filename()?.strip_suffix(".jsonl")?.parse().ok()
}

#[derive(Debug, Clone)]
pub struct JobOutput {
    target: Source,
}

impl JobOutput {
    /// Open an output prefix URL (or folder, created if missing).
    pub fn open(spec: &str) -> Result<Self> {
        let local = match url::Url::parse(spec) {
            Ok(url) if url.scheme() == "file" => url.to_file_path().ok(),
            Ok(url) if url.scheme().len() > 1 => None,
            _ => Some(spec.into()),
        };
        if let Some(folder) = local {
            std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
        }
        Ok(Self {
            target: Source::open(spec)?,
        })
    }

    fn path(&self, name: &str) -> Path {
        match &self.target.prefix {
            Some(prefix) => Path::from(format!("{prefix}/{name}")),
            None => Path::from(name),
        }
    }

    /// Where the JSON result goes, as a URL or file path.
    pub fn result_uri(&self) -> String {
        self.target.display_name(&self.path(RESULT_JSON))
    }

    /// The encoded result of an earlier delivery of this job, if it finished.
    pub async fn existing_result(&self) -> Result<Option<Vec<u8>>> {
        match self.target.store.get(&self.path(RESULT_PB)).await {
            Ok(found) => Ok(Some(
                found.bytes().await.context("reading the earlier result")?.to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).context("looking for an earlier result"),
        }
    }

    /// Write the result: the protobuf (for republishing) and the JSON that users read.
    pub async fn write_result(&self, result: &RankResult) -> Result<()> {
        let json = serde_json::to_vec_pretty(&result_json(result))?;
        let store = &self.target.store;
        store
            .put(&self.path(RESULT_PB), PutPayload::from(result.encode_to_vec()))
            .await
            .with_context(|| format!("writing {}", self.target.display_name(&self.path(RESULT_PB))))?;
        store
            .put(&self.path(RESULT_JSON), PutPayload::from(json))
            .await
            .with_context(|| format!("writing {}", self.result_uri()))?;
        Ok(())
    }

    /// Every comparison checkpointed by earlier deliveries of this job (or earlier runs of a
    /// `qrank rank --resume`), oldest first, and the number of the next part to write: one
    /// past the highest found, so that no part is written over when an earlier one was removed.
    /// Only `NNNNNN.jsonl` files are parts; anything else in the folder is left alone.
    pub async fn read_checkpoint(&self) -> Result<(Vec<ComparisonRecord>, u32)> {
        let dir = self.path(CHECKPOINT_DIR);
        let mut parts: Vec<(u32, Path)> = self
            .target
            .store
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect::<Vec<Path>>()
            .await
            .context("listing checkpoints")?
            .into_iter()
            .filter_map(|path| Some((part_number(&path)?, path)))
            .collect();
        parts.sort();
        let mut records = Vec::new();
        for (_, part) in &parts {
            let bytes = self.target.store.get(part).await?.bytes().await?;
            let text = std::str::from_utf8(&bytes).with_context(|| format!("checkpoint {part} is not UTF-8"))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                records.push(serde_json::from_str(line).with_context(|| format!("parsing checkpoint {part}"))?);
            }
        }
        let next = parts.last().map_or(0, |(number, _)| number + 1);
        Ok((records, next))
    }

    /// Fail now, naming the prefix, if nothing can be written under it, rather than at the
    /// first checkpoint, minutes into a run.
    pub async fn check_writable(&self) -> Result<()> {
        let probe = self.path(WRITE_CHECK);
        let shown = self.target.display_name(&probe);
        self.target
            .store
            .put(&probe, PutPayload::from_static(b"qrank write check\n"))
            .await
            .with_context(|| format!("{shown} cannot be written"))?;
        self.target
            .store
            .delete(&probe)
            .await
            .with_context(|| format!("removing {shown}"))?;
        Ok(())
    }

    /// Write checkpoint part `number`.
    pub async fn write_checkpoint(&self, number: u32, records: &[ComparisonRecord]) -> Result<()> {
        let mut text = Vec::new();
        for record in records {
            serde_json::to_writer(&mut text, record)?;
            text.push(b'\n');
        }
        let path = self.path(&format!("{CHECKPOINT_DIR}/{number:06}.jsonl"));
        self.target
            .store
            .put(&path, PutPayload::from(text))
            .await
            .with_context(|| format!("writing checkpoint {path}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use engine::compare::Stage;

    use super::*;

    fn record(items: &[&str]) -> ComparisonRecord {
        ComparisonRecord {
            items: items.iter().map(|&i| i.to_owned()).collect(),
            stages: vec![Stage {
                slots: vec![0, 1],
                probs: vec![0.75, 0.25],
            }],
            criterion: None,
            model: None,
        }
    }

    /// Parts are read in order, other files are left alone, and the next part is numbered past
    /// the highest, so that a gap (a part removed) does not lead to one written over.
    #[tokio::test]
    async fn checkpoint_parts_are_read_in_order_and_never_written_over() {
        let dir = tempfile::tempdir().unwrap();
        let output = JobOutput::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(output.read_checkpoint().await.unwrap().1, 0);
        output.write_checkpoint(5, &[record(&["c", "d"])]).await.unwrap();
        output.write_checkpoint(0, &[record(&["a", "b"])]).await.unwrap();
        let folder = dir.path().join(CHECKPOINT_DIR);
        std::fs::write(folder.join("notes.txt"), "not a part").unwrap();
        std::fs::write(folder.join("000009.jsonl.partial"), "{").unwrap();
        let (records, next) = output.read_checkpoint().await.unwrap();
        let items: Vec<_> = records.iter().map(|r| r.items.join(",")).collect();
        assert_eq!(items, ["a,b", "c,d"]);
        assert_eq!(next, 6);
        output.check_writable().await.unwrap();
        assert!(!dir.path().join(WRITE_CHECK).exists(), "the probe is removed");
    }
}
