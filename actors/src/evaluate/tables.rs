//! Reading the two sides of `qrank eval`: a ranking that `qrank rank` or the service wrote, and
//! human scores in the forms image-quality datasets ship them. KonIQ-10k and KADID-10k: a CSV
//! with a header (`image_name,...,MOS,...`; `dist_img,ref_img,dmos,var`). TID2013:
//! `mos_with_names.txt`, a score and a name a line, split by spaces, no header. PIPAL:
//! `name,score` lines, no header. So the delimiter is read off the first line (a comma, else a
//! semicolon, else a tab, else spaces), and a first line holding a number is data, not a header.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::UsageError;

/// Column names tried, in order and ignoring case, when the truth's columns are not named.
const NAME_COLUMNS: [&str; 7] = ["name", "image_name", "image", "dist_img", "filename", "file", "path"];
const SCORE_COLUMNS: [&str; 5] = ["mos", "score", "dmos", "mos_zscore", "rating"];

/// Scores by image name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scored {
    pub names: Vec<String>,
    pub scores: Vec<f64>,
}

impl Scored {
    pub(super) fn push(&mut self, name: &str, score: f64) {
        self.names.push(name.to_owned());
        self.scores.push(score);
    }
}

/// The truth as read: scores oriented so that higher is better, and the column they came from.
#[derive(Debug)]
pub struct Truth {
    pub scored: Scored,
    pub column: String,
}

/// The ranking `qrank rank` wrote, as CSV (`rank,name,score,...`; rows of skipped files have no
/// score and are left out) or JSON (`ranking.items`).
pub fn read_ranking(path: &Path) -> Result<Scored> {
    let text = read(path)?;
    if text.trim_start().starts_with('{') {
        return read_json_ranking(path, &text);
    }
    let table = Table::parse(path, &text)?;
    let name = table.column(path, "name")?;
    let score = table.column(path, "score")?;
    let mut scored = Scored::default();
    for (line, row) in &table.rows {
        let value = field(row, score);
        if value.is_empty() {
            continue; // a skipped file, listed with its reason
        }
        scored.push(field(row, name), number(path, *line, value)?);
    }
    Ok(scored)
}

/// The truth: its `name_column` and `score_column` (names, or numbers counted from 1), or the
/// first of the usual names, or in a file without a header its first text and first number.
/// `lower_is_better` flips the scores (DMOS in LIVE or CSIQ). Another qrank ranking (CSV or
/// JSON) serves as the truth too, to see how far two models agree.
pub fn read_truth(
    path: &Path,
    name_column: Option<&str>,
    score_column: Option<&str>,
    lower_is_better: bool,
) -> Result<Truth> {
    let text = read(path)?;
    let sign = if lower_is_better { -1.0 } else { 1.0 };
    if text.trim_start().starts_with('{') {
        let mut scored = read_json_ranking(path, &text)?;
        scored.scores.iter_mut().for_each(|s| *s *= sign);
        return Ok(Truth {
            scored,
            column: "score".into(),
        });
    }
    let table = Table::parse(path, &text)?;
    let name = table.pick(path, name_column, &NAME_COLUMNS, "--truth-name", false)?;
    let score = table.pick(path, score_column, &SCORE_COLUMNS, "--truth-score", true)?;
    let mut scored = Scored::default();
    let mut seen: HashMap<&str, u64> = HashMap::with_capacity(table.rows.len());
    for (line, row) in &table.rows {
        let image = field(row, name);
        if let Some(first) = seen.insert(image, *line) {
            return Err(UsageError(format!(
                "{}: {image} is scored twice, on lines {first} and {line}",
                path.display()
            ))
            .into());
        }
        scored.push(image, sign * number(path, *line, field(row, score))?);
    }
    Ok(Truth {
        scored,
        column: table.name_of(score),
    })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The items of a JSON ranking: `ranking.items` (`name`, `score`) of a `qrank rank --format
/// json` output, or `items` (`uri`, `score`) of the `result.json` the service writes under a
/// job's output prefix.
fn read_json_ranking(path: &Path, text: &str) -> Result<Scored> {
    let shown = path.display();
    let report: serde_json::Value =
        serde_json::from_str(text).map_err(|e| UsageError(format!("{shown}: not a qrank JSON ranking: {e}")))?;
    let (items, name_key) = match (report["ranking"]["items"].as_array(), report["items"].as_array()) {
        (Some(items), _) => (items, "name"),
        (None, Some(items)) => (items, "uri"),
        (None, None) => {
            return Err(UsageError(format!(
                "{shown}: neither ranking.items (`qrank rank --format json`) nor items (a service result)"
            ))
            .into())
        }
    };
    let mut scored = Scored::default();
    for (i, item) in items.iter().enumerate() {
        let (Some(name), Some(score)) = (item[name_key].as_str(), item["score"].as_f64()) else {
            return Err(UsageError(format!("{shown}: item {i} lacks a {name_key} or a score")).into());
        };
        scored.push(name, score);
    }
    Ok(scored)
}

/// A delimited text file: its header, if its first line is one, and its rows with their line
/// numbers.
struct Table {
    header: Option<Vec<String>>,
    rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    fn parse(path: &Path, text: &str) -> Result<Self> {
        let text = text.trim_start_matches('\u{feff}');
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let mut rows = match [b',', b';', b'\t'].into_iter().find(|&d| first.contains(char::from(d))) {
            Some(delimiter) => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .trim(csv::Trim::All)
                    .delimiter(delimiter)
                    .from_reader(text.as_bytes());
                let mut rows = Vec::new();
                for row in reader.records() {
                    let row = row.map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
                    rows.push((row.position().map_or(0, |p| p.line()), row));
                }
                rows
            }
            None => (1..)
                .zip(text.lines())
                .map(|(line, l)| (line, l.split_whitespace().collect()))
                .collect(),
        };
        rows.retain(|(_, row)| row.iter().any(|f| !f.is_empty()));
        let is_data = |row: &csv::StringRecord| row.iter().any(|f| f.parse::<f64>().is_ok_and(f64::is_finite));
        let header = match rows.first() {
            Some((_, first)) if !is_data(first) => Some(rows.remove(0).1.iter().map(str::to_owned).collect()),
            _ => None,
        };
        Ok(Self { header, rows })
    }

    /// The column named `name` (any case), or numbered so from 1.
    fn find(&self, name: &str) -> Option<usize> {
        if let Ok(number) = name.parse::<usize>() {
            let width = self.rows.first().map_or(0, |(_, row)| row.len());
            return (1..=width).contains(&number).then(|| number - 1);
        }
        self.header.as_ref()?.iter().position(|h| h.eq_ignore_ascii_case(name))
    }

    fn column(&self, path: &Path, name: &str) -> Result<usize> {
        self.find(name).ok_or_else(|| self.missing(path, name))
    }

    /// The column asked for, or the first of the `usual` names, or in a file without a header
    /// the first column whose first value is a number (`numeric`) or is not.
    fn pick(&self, path: &Path, wanted: Option<&str>, usual: &[&str], option: &str, numeric: bool) -> Result<usize> {
        if let Some(name) = wanted {
            return self.column(path, name);
        }
        let found = match (&self.header, self.rows.first()) {
            (Some(_), _) => usual.iter().find_map(|name| self.find(name)),
            (None, Some((_, first))) => first.iter().position(|f| f.parse::<f64>().is_ok() == numeric),
            (None, None) => None,
        };
        found.ok_or_else(|| self.missing(path, &format!("any of {} ({option} names it)", usual.join(", "))))
    }

    fn name_of(&self, column: usize) -> String {
        match &self.header {
            Some(header) => header[column].clone(),
            None => format!("column {}", column + 1),
        }
    }

    fn missing(&self, path: &Path, what: &str) -> anyhow::Error {
        let has = match &self.header {
            Some(header) => format!("its columns are: {}", header.join(", ")),
            None => "it has no header: name its columns by number, from 1".to_owned(),
        };
        UsageError(format!("{}: no column {what}; {has}", path.display())).into()
    }
}

fn field(row: &csv::StringRecord, column: usize) -> &str {
    row.get(column).unwrap_or("")
}

fn number(path: &Path, line: u64, value: &str) -> Result<f64> {
    match value.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(UsageError(format!("{}, line {line}: {value:?} is not a number", path.display())).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth_of(text: &str, name: Option<&str>, score: Option<&str>) -> Result<Truth> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("truth");
        std::fs::write(&path, text).unwrap();
        read_truth(&path, name, score, false)
    }

    #[test]
    fn the_datasets_forms_are_read() {
        // KonIQ-10k: a header, the usual names among others, a byte-order mark.
        let koniq = truth_of("\u{feff}image_name,c1,MOS,SD\n10004473376.jpg,0,3.42,0.6\n", None, None).unwrap();
        assert_eq!(koniq.scored.names, ["10004473376.jpg"]);
        assert_eq!((koniq.scored.scores[0], koniq.column.as_str()), (3.42, "MOS"));
        // KADID-10k: dist_img and dmos.
        let kadid = truth_of(
            "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.3\n",
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            (kadid.scored.names[0].as_str(), kadid.column.as_str()),
            ("I01_01_01.png", "dmos")
        );
        // TID2013: score then name, spaces, no header.
        let tid = truth_of("5.51429 i01_01_1.bmp\n5.56757 i01_01_2.bmp\n", None, None).unwrap();
        assert_eq!(tid.scored.names, ["i01_01_1.bmp", "i01_01_2.bmp"]);
        assert_eq!((tid.scored.scores[1], tid.column.as_str()), (5.56757, "column 1"));
        // PIPAL: name,score, no header; semicolons as a European spreadsheet writes them.
        let pipal = truth_of("A0001_00_00.bmp,1400.2\n", None, None).unwrap();
        assert_eq!(pipal.scored.scores, [1400.2]);
        let semicolons = truth_of("file;quality\na.jpg;2,5\n", Some("file"), Some("2"));
        assert!(semicolons.unwrap_err().to_string().contains("\"2,5\" is not a number"));
    }

    /// A service's `result.json` names its images by `uri`.
    #[test]
    fn a_service_result_is_a_ranking_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("result.json");
        let result = r#"{"job_id": "j", "items": [{"uri": "s3://b/in/a.jpg", "score": 1.5, "rank": 1}]}"#;
        std::fs::write(&path, result).unwrap();
        let scored = read_ranking(&path).unwrap();
        assert_eq!(
            (scored.names, scored.scores),
            (vec!["s3://b/in/a.jpg".to_owned()], vec![1.5])
        );
        std::fs::write(&path, r#"{"ranking": {}}"#).unwrap();
        let err = read_ranking(&path).unwrap_err().to_string();
        assert!(err.contains("neither ranking.items"), "{err}");
    }

    #[test]
    fn unreadable_truths_say_why() {
        let err = truth_of("picture,quality\na.jpg,3\n", None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("its columns are: picture, quality"), "{err}");
        let err = truth_of("a.jpg 3\n", Some("name"), None).unwrap_err().to_string();
        assert!(err.contains("no header: name its columns by number"), "{err}");
        let err = truth_of("name,mos\na.jpg,3\na.jpg,4\n", None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.jpg is scored twice, on lines 2 and 3"), "{err}");
    }
}
