//! Writing a ranking as CSV or JSON. Both list every ranked image and every skipped file, so a
//! user reading either sees everything that happened to their images.

use std::io::Write;

use anyhow::{Context, Result};
use engine::rank::Ranking;

use crate::cli::{Format, OutputArgs};
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
    }
    match &output.out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display())),
        None => std::io::stdout().lock().write_all(&text).context("writing to stdout"),
    }
}

/// One header, one row per ranked image, then one row per skipped file with its reason.
fn write_csv(out: &mut impl Write, ranking: &Ranking, errors: &[FileError]) -> Result<()> {
    writeln!(out, "rank,name,score,std_error,connected,error")?;
    for item in &ranking.items {
        let (rank, name, score, se, connected) = (
            item.rank,
            csv_field(&item.name),
            item.score,
            item.std_error,
            item.connected,
        );
        writeln!(out, "{rank},{name},{score:.6},{se:.6},{connected},")?;
    }
    for error in errors {
        writeln!(out, ",{},,,,{}", csv_field(&error.name), csv_field(&error.reason))?;
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
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("a.jpg"), "a.jpg");
        assert_eq!(csv_field("a,b.jpg"), "\"a,b.jpg\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
