//! The HTML report: the ranking as a page a curator opens in a browser, best first, each image
//! beside its score, then the files that were skipped and why.
//!
//! Images from a local folder are shown from their own files, linked rather than embedded: a
//! report on ten thousand photos stays a few megabytes, and the browser loads the images lazily
//! as the page scrolls. Images from an object store are named only, since a browser cannot open
//! s3:// or gs:// URLs. Names and reasons are escaped, because file names are user data.

use std::fmt::Write as _;
use std::path::Path;

use engine::rank::RankedItem;
use url::Url;

use super::{mode_columns, ModeColumn};
use crate::pipeline::Report;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:160px;max-height:120px}\
tr.dropped{opacity:.45}.note{color:#a60;font-size:90%}";

/// The whole page.
pub fn render(report: &Report) -> String {
    let ranking = &report.ranking;
    let columns = mode_columns(ranking);
    let mut page = String::new();
    page.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<title>qrank ranking</title>\n");
    let _ = writeln!(page, "<style>{STYLE}</style>\n</head>\n<body>\n<h1>qrank ranking</h1>");
    let stats = &report.stats;
    let _ = write!(
        page,
        "<p>{} images ranked by {}, best first; {} model calls in {:.1} s",
        ranking.items.len(),
        escape(&report.model),
        stats.num_model_calls,
        stats.seconds
    );
    if let Some(reason) = ranking.stop_reason {
        let _ = write!(page, "; stopped by {}", reason.label());
    }
    match report.errors.len() {
        0 => page.push_str(".</p>\n"),
        skipped => {
            let _ = writeln!(page, "; {skipped} skipped, listed below.</p>");
        }
    }
    page.push_str("<table>\n<thead><tr><th>rank</th><th>image</th><th>name</th><th>score</th>");
    page.push_str("<th>std error</th>");
    for (name, _) in &columns {
        let _ = write!(page, "<th>{name}</th>");
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for item in &ranking.items {
        row(&mut page, item, &columns);
    }
    page.push_str("</tbody>\n</table>\n");
    if !report.errors.is_empty() {
        page.push_str(
            "<h2>Skipped</h2>\n<table>\n<thead><tr><th>name</th><th>kind</th><th>reason</th></tr></thead>\n<tbody>\n",
        );
        for error in &report.errors {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&error.name),
                error.kind,
                escape(&error.reason)
            );
        }
        page.push_str("</tbody>\n</table>\n");
    }
    page.push_str("</body>\n</html>\n");
    page
}

/// One ranked image: greyed out when it is among those to drop, and flagged when no
/// comparison linked it to the rest, since then only the prior placed it.
fn row(page: &mut String, item: &RankedItem, columns: &[&ModeColumn]) {
    let class = if item.dropped == Some(true) {
        " class=\"dropped\""
    } else {
        ""
    };
    let image = local_file_url(&item.name)
        .map(|url| format!("<img src=\"{}\" loading=\"lazy\" alt=\"\">", escape(&url)))
        .unwrap_or_default();
    let note = if item.connected {
        ""
    } else {
        " <span class=\"note\">not linked to the others by any comparison</span>"
    };
    let _ = write!(
        page,
        "<tr{class}><td class=\"num\">{}</td><td>{image}</td><td>{}{note}</td>\
         <td class=\"num\">{:.4}</td><td class=\"num\">{:.4}</td>",
        item.rank,
        escape(&item.name),
        item.score,
        item.std_error
    );
    for (_, value) in columns {
        let _ = write!(page, "<td class=\"num\">{}</td>", value(item).unwrap_or_default());
    }
    page.push_str("</tr>\n");
}

/// A `file://` URL for an image named by its local path; None for an object-store name, or a
/// file that is no longer there.
fn local_file_url(name: &str) -> Option<String> {
    let path = Path::new(name).canonicalize().ok()?;
    if !path.is_file() {
        return None;
    }
    Url::from_file_path(path).ok().map(String::from)
}

/// Text made safe to place in HTML, in elements and in quoted attributes alike.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use engine::rank::{Ranking, StopReason};

    use super::*;
    use crate::pipeline::{FileError, Stats};

    fn item(rank: u32, name: &str) -> RankedItem {
        RankedItem {
            rank,
            name: name.to_owned(),
            score: -f64::from(rank),
            std_error: 0.25,
            connected: true,
            p_top_k: None,
            dropped: Some(rank == 3),
            p_dropped: Some(if rank == 3 { 0.9 } else { 0.05 }),
        }
    }

    fn report(items: Vec<RankedItem>, errors: Vec<FileError>) -> Report {
        Report {
            model: "co-instruct".into(),
            ranking: Ranking {
                items,
                slot_bias: Vec::new(),
                stop_reason: Some(StopReason::Settled),
            },
            errors,
            stats: Stats {
                num_images: 4,
                num_model_calls: 12,
                seconds: 1.5,
                ..Stats::default()
            },
        }
    }

    #[test]
    fn shows_local_images_names_remote_ones_and_escapes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("a & b.jpg");
        std::fs::write(&local, b"not read by the report").unwrap();
        let local_name = local.to_string_lossy().into_owned();
        let hostile = "<script>alert('x')</script>.jpg";
        let mut unlinked = item(2, hostile);
        unlinked.connected = false;
        let page = render(&report(
            vec![item(1, &local_name), unlinked, item(3, "s3://bucket/photos/c.jpg")],
            vec![FileError {
                name: "bad\".jpg".into(),
                kind: "corrupt",
                reason: "bad\".jpg: <corrupt>".into(),
            }],
        ));

        // Rows in rank order, each with its name, escaped.
        let at = |needle: &str| page.find(needle).unwrap_or_else(|| panic!("no {needle} in {page}"));
        let escaped_hostile = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;.jpg";
        assert!(at(&escape(&local_name)) < at(escaped_hostile));
        assert!(at(escaped_hostile) < at("s3://bucket/photos/c.jpg"));
        assert!(!page.contains("<script>"), "{page}");
        // The local image is shown from its file; the object-store one and the missing one are not.
        let url = Url::from_file_path(local.canonicalize().unwrap()).unwrap();
        assert!(
            page.contains(&format!("<img src=\"{}\"", escape(url.as_str()))),
            "{page}"
        );
        assert_eq!(page.matches("<img ").count(), 1, "{page}");
        // The mode's columns, the drop mark, the unlinked note, the summary and the skipped file.
        assert!(page.contains("<th>dropped</th><th>p_dropped</th>"), "{page}");
        assert!(!page.contains("<th>p_top_k</th>"), "{page}");
        assert_eq!(page.matches("<tr class=\"dropped\">").count(), 1);
        assert!(page.contains("not linked to the others"));
        assert!(page.contains("3 images ranked by co-instruct, best first; 12 model calls in 1.5 s; stopped by settled; 1 skipped, listed below."));
        assert!(page.contains("<td>bad&quot;.jpg</td><td>corrupt</td><td>bad&quot;.jpg: &lt;corrupt&gt;</td>"));
    }

    #[test]
    fn a_run_with_nothing_skipped_has_no_skipped_section() {
        let page = render(&report(vec![item(1, "s3://b/a.jpg")], Vec::new()));
        assert!(!page.contains("Skipped"), "{page}");
        assert!(page.ends_with("</html>\n"));
    }
}
