//! Writing a ranking as CSV, JSON or an HTML page. Each lists every ranked image and every
//! skipped file, so a user reading any of them sees everything that happened to their images.

mod html;

use std::io::Write;

use anyhow::{Context, Result};
use engine::rank::{RankedItem, Ranking};

use crate::cli::{Format, OutputArgs, UsageError};
use crate::pipeline::{FileError, Report};

/// Write `report` where `output` says: a file, or stdout.
pub fn write(report: &Report, output: &OutputArgs) -> Result<()> {
    let mut text = Vec::new();
    match output.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut text, report)?;
            text.push(b'\n');
        }
        Format::Csv => write_csv(&mut text, &report.ranking, &report.errors)?,
        Format::Html => text = html::render(report).into_bytes(),
    }
    match &output.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display())),
        None => std::io::stdout().lock().write_all(&text).context("writing to stdout"),
    }
}

/// Fail now, with a usage error, if `--out` cannot be written: a run with a comparing model can
/// take hours, and a typo in the folder would otherwise lose its whole ranking at the end. The
/// file is opened for appending, which changes nothing in it, and removed again if this made it.
pub fn check_writable(output: &OutputArgs) -> Result<()> {
    let Some(path) = &output.out else {
        return Ok(());
    };
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| UsageError(format!("--out {}: cannot write: {e}", path.display())))?;
    if !existed {
        std::fs::remove_file(path).with_context(|| format!("removing the test file {}", path.display()))?;
    }
    Ok(())
}

/// A column that only some runs fill: those of a mode, or of a model that compares.
type ModeColumn = (&'static str, fn(&RankedItem) -> Option<String>);

/// The mode's columns, before `error`: a top-k run that compared groups adds `p_top_k`; a
/// drop-worst run adds `dropped`, and `p_dropped` when it compared groups.
const MODE_COLUMNS: [ModeColumn; 3] = [
    ("p_top_k", |item| item.p_top_k.map(|p| format!("{p:.6}"))),
    ("dropped", |item| item.dropped.map(|d| d.to_string())),
    ("p_dropped", |item| item.p_dropped.map(|p| format!("{p:.6}"))),
];

/// The mode columns this ranking fills, in order; both the CSV and the HTML page show these.
fn mode_columns(ranking: &Ranking) -> Vec<&'static ModeColumn> {
    MODE_COLUMNS
        .iter()
        .filter(|(_, value)| ranking.items.iter().any(|item| value(item).is_some()))
        .collect()
}

/// One header, one row per ranked image, then one row per skipped file with its reason.
fn write_csv(out: &mut impl Write, ranking: &Ranking, errors: &[FileError]) -> Result<()> {
    let columns = mode_columns(ranking);
    let extra_names: String = columns.iter().map(|(name, _)| format!("{name},")).collect();
    writeln!(out, "rank,name,score,std_error,connected,{extra_names}error")?;
    for item in &ranking.items {
        let (rank, name, score, se, connected) = (
            item.rank,
            csv_field(&item.name),
            item.score,
            item.std_error,
            item.connected,
        );
        let extra: String = columns
            .iter()
            .map(|(_, value)| format!("{},", value(item).unwrap_or_default()))
            .collect();
        writeln!(out, "{rank},{name},{score:.6},{se:.6},{connected},{extra}")?;
    }
    let blanks = ",".repeat(columns.len());
    for error in errors {
        writeln!(
            out,
            ",{},,,,{blanks}{}",
            csv_field(&error.name),
            csv_field(&error.reason)
        )?;
    }
    Ok(())
}

/// Quote a field when it holds a comma, quote or line break (RFC 4180).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_adds_the_cut_probability_column_of_the_mode() {
        let item = |rank: u32, p_dropped: Option<f64>| RankedItem {
            rank,
            name: format!("{rank}.jpg"),
            score: -f64::from(rank),
            std_error: 0.5,
            connected: true,
            p_top_k: None,
            dropped: Some(rank == 2),
            p_dropped,
        };
        let errors = [FileError {
            name: "bad.jpg".into(),
            kind: "corrupt",
            reason: "bad.jpg: corrupt".into(),
        }];
        let csv = |items: Vec<RankedItem>| {
            let ranking = Ranking {
                items,
                slot_bias: Vec::new(),
                stop_reason: None,
            };
            let mut out = Vec::new();
            write_csv(&mut out, &ranking, &errors).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            csv(vec![item(1, Some(0.01)), item(2, Some(0.75))]),
            "rank,name,score,std_error,connected,dropped,p_dropped,error\n\
             1,1.jpg,-1.000000,0.500000,true,false,0.010000,\n\
             2,2.jpg,-2.000000,0.500000,true,true,0.750000,\n\
             ,bad.jpg,,,,,,bad.jpg: corrupt\n"
        );
        assert_eq!(
            csv(vec![item(1, None)]),
            "rank,name,score,std_error,connected,dropped,error\n\
             1,1.jpg,-1.000000,0.500000,true,false,\n\
             ,bad.jpg,,,,,bad.jpg: corrupt\n",
            "a model that scores each image gives no probability"
        );
        let full = vec![RankedItem {
            dropped: None,
            ..item(1, None)
        }];
        assert_eq!(
            csv(full),
            "rank,name,score,std_error,connected,error\n\
             1,1.jpg,-1.000000,0.500000,true,\n\
             ,bad.jpg,,,,bad.jpg: corrupt\n"
        );
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a.jpg"), "a.jpg");
        assert_eq!(csv_field("a,b.jpg"), "\"a,b.jpg\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
