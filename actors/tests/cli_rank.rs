//! `qrank rank` end to end on real files: what a curator sees on a laptop.

mod support;

use serde_json::Value;
use support::{json, qrank, repo};

/// The quick start: each degraded copy of a photo ranks below its original.
#[test]
fn example_photos_rank_every_degraded_copy_below_its_original() {
    let out = qrank(&["rank", "examples/photos", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let items = report["ranking"]["items"].as_array().unwrap();
    let rank_of = |file: &str| {
        items
            .iter()
            .find(|i| i["name"] == format!("examples/photos/{file}"))
            .map(|i| i["rank"].as_u64().unwrap())
    };
    let mut checked = 0;
    for item in items {
        let name = item["name"].as_str().unwrap().trim_start_matches("examples/photos/");
        if let Some((photo, _degradation)) = name.trim_end_matches(".jpg").split_once('-') {
            let original = rank_of(&format!("{photo}.jpg")).unwrap_or_else(|| panic!("no original for {name}"));
            assert!(
                original < item["rank"].as_u64().unwrap(),
                "{name} ranks above {photo}.jpg"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 8,
        "expected degraded copies in examples/photos, found {checked}"
    );
    assert_eq!(report["model"], "brisque");
    assert!(report["errors"].as_array().unwrap().is_empty());
}

/// Good images among corrupt, truncated, empty, non-image and bomb files: every good one is
/// ranked, every bad one is listed with its reason, and the exit code says some were skipped.
#[test]
fn mixed_folder_ranks_the_good_and_reports_the_bad() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = repo().join("engine/tests/data/images");
    let mut num_good = 0;
    for (kind, count) in [("good", &mut num_good), ("bad", &mut 0)] {
        for entry in std::fs::read_dir(fixtures.join(kind)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            *count += 1;
        }
    }
    let out_file = dir.path().join("ranking.json");
    let out = qrank(&[
        "rank",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // The output file is not itself an input: it was written after the listing.
    let report: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(report["ranking"]["items"].as_array().unwrap().len(), num_good);
    let errors: Vec<(String, String)> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
            (name, e["kind"].as_str().unwrap().to_owned())
        })
        .collect();
    let expected = qrank_tests::bad_fixture_kinds();
    let expected_pairs: Vec<(String, String)> = expected
        .iter()
        .map(|(n, k)| ((*n).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(errors, expected_pairs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for name in expected.keys() {
        assert!(stderr.contains(name), "stderr does not mention {name}: {stderr}");
    }
}

/// CSV lists ranked rows, then skipped files with their reason in the last column.
#[test]
fn csv_output_has_ranked_and_skipped_rows() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("examples/photos/coffee.jpg"), dir.path().join("coffee.jpg")).unwrap();
    std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
    let out = qrank(&["rank", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let csv = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "rank,name,score,std_error,connected,error");
    assert!(lines[1].starts_with("1,") && lines[1].contains("coffee.jpg"), "{csv}");
    assert!(lines[2].starts_with(",") && lines[2].ends_with("empty file"), "{csv}");
}

/// `--format html`: a page that lists every photo best first, each shown from its own file.
#[test]
fn html_report_shows_every_photo_in_rank_order() {
    let dir = tempfile::tempdir().unwrap();
    let page_path = dir.path().join("report.html");
    let out = qrank(&[
        "rank",
        "examples/photos",
        "--format",
        "html",
        "--out",
        page_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(&page_path).unwrap();
    let report = json(&qrank(&["rank", "examples/photos", "--format", "json"]));
    let names: Vec<&str> = report["ranking"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 20);
    let rows: Vec<&str> = page.split("<tr><td class=\"num\">").skip(1).collect();
    assert_eq!(rows.len(), names.len(), "{page}");
    for (rank, (row, name)) in rows.iter().zip(&names).enumerate() {
        assert!(row.starts_with(&format!("{}</td>", rank + 1)), "{row}");
        assert!(
            row.contains(&format!("<td>{name}</td>")),
            "row {} is not {name}: {row}",
            rank + 1
        );
        let src = row.split("<img src=\"").nth(1).and_then(|s| s.split('"').next());
        let path = url::Url::parse(src.expect("every local photo is shown"))
            .unwrap()
            .to_file_path()
            .unwrap();
        assert_eq!(path, repo().join(name).canonicalize().unwrap());
    }
}

/// --drop-worst with a model that scores each image marks the worst fraction, with no
/// probability since the scores are exact.
#[test]
fn drop_worst_marks_the_worst_fraction() {
    let out = qrank(&["rank", "examples/photos", "--drop-worst", "0.1"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("rank,name,score,std_error,connected,dropped,error"));
    let dropped: Vec<&str> = lines.map(|line| line.split(',').nth(5).unwrap()).collect();
    let mut expected = vec!["false"; 18];
    expected.extend(["true"; 2]);
    assert_eq!(dropped, expected, "{csv}");
}

/// A folder with a photo at the top and one in the sub-folder `sub`.
fn folder_with_a_sub_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::copy(repo().join("examples/photos/coffee.jpg"), dir.path().join("top.jpg")).unwrap();
    std::fs::copy(
        repo().join("examples/photos/rocket.jpg"),
        dir.path().join("sub/nested.jpg"),
    )
    .unwrap();
    dir
}

/// Sub-folders are read only with --recursive.
#[test]
fn recursive_descends_into_sub_folders() {
    let dir = folder_with_a_sub_folder();
    let count = |extra: &[&str]| {
        let mut args = vec!["rank", dir.path().to_str().unwrap(), "--format", "json"];
        args.extend_from_slice(extra);
        json(&qrank(&args))["ranking"]["items"].as_array().unwrap().len()
    };
    assert_eq!(count(&[]), 1);
    assert_eq!(count(&["--recursive"]), 2);
}

/// A symlink loop in a folder walked with --recursive is reported and walked past: the images
/// around it are ranked, and the run exits 2 as for any skipped file. It used to end the run
/// with nothing ranked.
#[cfg(unix)]
#[test]
fn a_symlink_loop_is_reported_and_the_rest_ranked() {
    let dir = folder_with_a_sub_folder();
    std::os::unix::fs::symlink("..", dir.path().join("sub/loop")).unwrap();
    let out = qrank(&["rank", dir.path().to_str().unwrap(), "--recursive", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    assert_eq!(report["ranking"]["items"].as_array().unwrap().len(), 2, "{report}");
    let errors = report["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["kind"], "list");
    let reason = errors[0]["reason"].as_str().unwrap();
    assert!(reason.contains("loop"), "the reason should name the loop: {reason}");
}

/// Mistakes in the call exit with 64 and say what is wrong; an empty source is a failure (1).
/// The limits on pixels and file size are the user's to set: photos over them are skipped as
/// `over_limit` with the option that raises the limit, and under them they are ranked.
#[test]
fn the_image_limits_follow_their_options() {
    // The example photos are 0.07 to 0.1 megapixels and 4 to 62 KiB.
    let tight = qrank(&["rank", "examples/photos", "--max-megapixels", "0.01"]);
    assert_eq!(tight.status.code(), Some(1), "nothing left to rank");
    let said = String::from_utf8_lossy(&tight.stderr);
    assert_eq!(said.matches("over a limit: pixel count").count(), 20, "{said}");
    assert_eq!(
        said.matches("(--max-megapixels raises the limit)").count(),
        20,
        "{said}"
    );
    let csv = String::from_utf8(tight.stdout).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains("is over 10000")).count(), 20, "{csv}");
    let loose = qrank(&[
        "rank",
        "examples/photos",
        "--max-megapixels",
        "0.5",
        "--max-file-mib",
        "1",
    ]);
    assert_eq!(
        loose.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&loose.stderr)
    );
    for bad in [
        ["--max-megapixels", "0"],
        ["--max-megapixels", "NaN"],
        ["--max-file-mib", "0"],
    ] {
        let out = qrank(&["rank", "examples/photos", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(64), "{bad:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(bad[0]), "{bad:?}");
    }
}

#[test]
fn usage_errors_and_empty_sources() {
    let missing = qrank(&["rank", "/no/such/folder"]);
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/folder"));
    assert_eq!(
        qrank(&["rank", "examples/photos", "--model", "nope"]).status.code(),
        Some(64)
    );
    assert_eq!(
        qrank(&["rank", "examples/photos", "--budget", "-1"]).status.code(),
        Some(64)
    );
    // An --out that cannot be written is refused before any image is read, not after the run.
    let unwritable = qrank(&["rank", "examples/photos", "--out", "/no/such/folder/ranking.csv"]);
    assert_eq!(unwritable.status.code(), Some(64));
    let said = String::from_utf8_lossy(&unwritable.stderr);
    assert!(
        said.contains("--out /no/such/folder/ranking.csv: cannot write"),
        "{said}"
    );
    assert!(!said.contains("skipped"), "{said}");
    assert_eq!(qrank(&["frobnicate"]).status.code(), Some(64));
    assert_eq!(qrank(&["--help"]).status.code(), Some(0));
    let empty = tempfile::tempdir().unwrap();
    let out = qrank(&["rank", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no images found"));
}

/// `qrank eval` against opinion scores built from the ranking itself: the order with the 2nd
/// and 3rd images swapped, given as DMOS (lower is better, as `--lower-is-better` says) under
/// bare file names, plus a row for an image not ranked. With n = 20 and no ties, one swap of neighbours gives SRCC
/// `1 - 6 * 2 / (n (n^2 - 1))` and KRCC `1 - 2 / (n (n - 1) / 2)`; the best 10% (2 images)
/// keeps one of its two, the worst 10% both. The linear PLCC is worked out here from the CSV's
/// scores; the logistic one is checked against scipy in `engine::logistic`, and here for its sign.
#[test]
fn eval_measures_a_ranking_against_opinion_scores() {
    let dir = tempfile::tempdir().unwrap();
    let ranking = dir.path().join("ranking.csv");
    let out = qrank(&["rank", "examples/photos", "--out", ranking.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&ranking).unwrap();
    let names: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').nth(1).unwrap()).collect();
    let scores: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    let n = names.len();
    assert_eq!(n, 20);
    let mut truth = String::from("image_name,DMOS\n");
    let mut better = Vec::new();
    for (position, name) in names.iter().enumerate() {
        let dmos = match position {
            1 => 2,
            2 => 1,
            p => p,
        };
        better.push(-(dmos as f64));
        truth.push_str(&format!("{},{dmos}\n", name.trim_start_matches("examples/photos/")));
    }
    truth.push_str("never-ranked.jpg,50\n");
    let truth_file = dir.path().join("mos.csv");
    std::fs::write(&truth_file, truth).unwrap();

    let args = [
        "eval",
        ranking.to_str().unwrap(),
        "--truth",
        truth_file.to_str().unwrap(),
        "--lower-is-better",
    ];
    let out = qrank(&[&args[..], &["--json"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&out);
    let figures = &report["agreement"];
    let nf = n as f64;
    let srcc = 1.0 - 6.0 * 2.0 / (nf * (nf * nf - 1.0));
    let krcc = 1.0 - 2.0 / (nf * (nf - 1.0) / 2.0);
    assert_eq!(figures["num_images"], 20);
    assert!((figures["srcc"].as_f64().unwrap() - srcc).abs() < 1e-12, "{figures}");
    assert!((figures["krcc"].as_f64().unwrap() - krcc).abs() < 1e-12, "{figures}");
    let plcc_linear = pearson(&scores, &better);
    assert!(
        (figures["plcc_linear"].as_f64().unwrap() - plcc_linear).abs() < 1e-9,
        "{figures}"
    );
    let plcc = figures["plcc"].as_f64().unwrap();
    assert!(plcc > 0.0 && plcc <= 1.0, "{figures}");
    assert_eq!(figures["best_precision"], 0.5);
    assert_eq!(figures["worst_precision"], 1.0);
    assert_eq!(report["truth_column"], "DMOS");
    assert_eq!(report["truth_lower_is_better"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("but not in the ranking: 1 (such as never-ranked.jpg)"),
        "{stderr}"
    );

    let table = qrank(&args);
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert!(stdout.contains(&format!("SRCC  {srcc:.4}")), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "PLCC  {plcc:.4}   after the 4-parameter logistic fit; linear {plcc_linear:.4}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("against DMOS (lower is better)"), "{stdout}");

    // Without the flag the order reads reversed, and the DMOS column is warned about.
    let unflipped = qrank(&args[..4]);
    let stdout = String::from_utf8_lossy(&unflipped.stdout);
    assert!(stdout.contains(&format!("SRCC  {:.4}", -srcc)), "{stdout}");
    assert!(stdout.contains("PLCC  -0."), "the fitted curve falls: {stdout}");
    let stderr = String::from_utf8_lossy(&unflipped.stderr);
    assert!(stderr.contains("pass --lower-is-better if it is here"), "{stderr}");
}

/// Pearson's correlation, written out here so that the test does not lean on the code it tests.
fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let dot = |f: &dyn Fn(usize) -> f64| (0..a.len()).map(f).sum::<f64>();
    let ab = dot(&|i| (a[i] - ma) * (b[i] - mb));
    let aa = dot(&|i| (a[i] - ma).powi(2));
    let bb = dot(&|i| (b[i] - mb).powi(2));
    ab / (aa * bb).sqrt()
}

/// A truth file without the needed columns is refused, naming its columns.
#[test]
fn eval_names_the_columns_of_a_truth_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let ranking = dir.path().join("ranking.json");
    let out = qrank(&[
        "rank",
        "examples/photos",
        "--format",
        "json",
        "--out",
        ranking.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let truth = dir.path().join("labels.csv");
    std::fs::write(&truth, "picture,quality\nrocket.jpg,3\n").unwrap();
    let out = qrank(&["eval", ranking.to_str().unwrap(), "--truth", truth.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("its columns are: picture, quality"), "{stderr}");
    let out = qrank(&[
        "eval",
        ranking.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--truth-name",
        "picture",
        "--truth-score",
        "quality",
    ]);
    assert_eq!(out.status.code(), Some(1), "one image is too few to compare orders");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of the 20 ranked images have a score"));
}
