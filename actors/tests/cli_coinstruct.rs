//! `qrank compare` and `qrank rank --model PATH` on the tiny Co-Instruct checkpoint: the weights
//! are random, so the answers mean nothing, but every step of the real path runs: the loader,
//! the tokenizer, preprocessing, the network, stage-wise answers and the ranking fit.

mod fake_hub;
mod support;

use std::path::Path;
use std::process::Output;

use fake_hub::FakeHub;
use qrank_tests::tiny_model;
use serde_json::Value;
use support::{json, qrank, qrank_env, repo};

fn ok_json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    json(out)
}

#[test]
fn compare_gives_a_full_ranking_of_stage_probabilities() {
    let model = tiny_model(false);
    let photos = ["coffee.jpg", "coffee-blur.jpg", "rocket.jpg", "chelsea.jpg"].map(|p| format!("examples/photos/{p}"));
    let mut args = vec!["compare"];
    args.extend(photos.iter().map(String::as_str));
    args.extend(["--model", model.path().to_str().unwrap(), "--json"]);
    let out = qrank(&args);
    let outcome = ok_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("qrank: loading Co-Instruct from {}", model.path().display()))
            && stderr.contains("qrank: Co-Instruct loaded in "),
        "the load is announced: {stderr}"
    );
    let stages = outcome["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 3, "a full ranking of 4 is 3 stages");
    for (k, stage) in stages.iter().enumerate() {
        let probs: Vec<f64> = stage["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), 4 - k);
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-6, "stage {k}: {probs:?}");
    }
}

#[test]
fn compare_answers_an_open_question() {
    let model = tiny_model(false);
    let out = qrank(&[
        "compare",
        "examples/photos/coffee.jpg",
        "examples/photos/coffee-noise.jpg",
        "--model",
        model.path().to_str().unwrap(),
        "--question",
        "Which image is sharper, and why?",
        "--max-tokens",
        "6",
        "--json",
    ]);
    let answer = ok_json(&out);
    assert_eq!(answer["question"], "Which image is sharper, and why?");
    assert!(answer["answer"].is_string());
}

/// `qrank rank examples/photos` with the tiny checkpoint at 1 call per image, and `extra`.
fn rank_photos_with_tiny_model(extra: &[&str]) -> Output {
    rank_photos_with_tiny_model_env(extra, &[])
}

/// [`rank_photos_with_tiny_model`] with these environment variables.
fn rank_photos_with_tiny_model_env(extra: &[&str], env: &[(&str, &Path)]) -> Output {
    let model = tiny_model(false);
    let mut args = vec![
        "rank",
        "examples/photos",
        "--model",
        model.path().to_str().unwrap(),
        "--budget",
        "1",
    ];
    args.extend_from_slice(extra);
    qrank_env(&args, env)
}

/// Each ranked image's name and score, best first.
fn named_scores(report: &Value) -> Vec<(String, f64)> {
    report["ranking"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap().to_string(), i["score"].as_f64().unwrap()))
        .collect()
}

/// The same names in the same order, and the same scores up to `1e-6`.
fn assert_same_ranking(a: &Value, b: &Value) {
    for ((name_a, score_a), (name_b, score_b)) in named_scores(a).into_iter().zip(named_scores(b)) {
        assert_eq!(name_a, name_b);
        assert!((score_a - score_b).abs() < 1e-6, "{name_a}: {score_a} vs {score_b}");
    }
}

#[test]
fn rank_with_coinstruct_compares_groups_and_fits() {
    let out = rank_photos_with_tiny_model(&["--format", "json"]);
    let report = ok_json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("qrank: Co-Instruct loaded in "), "{stderr}");
    let items = report["ranking"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert!(
        items.iter().all(|i| i["std_error"].as_f64().unwrap() > 0.0),
        "a fitted ranking has uncertainty"
    );
    assert_eq!(
        report["stats"]["num_model_calls"], 20,
        "1 call per image over 20 images"
    );
    assert_eq!(
        report["stats"]["precision"], "f32",
        "auto on the CPU, with memory for the tiny model"
    );
    assert!(report["ranking"]["stop_reason"].is_string());
}

/// The stage probabilities `qrank compare --json` gives for four photos, stage by stage.
fn compare_four_photos(model: &Path, extra: &[&str]) -> Vec<Vec<f64>> {
    compare_four_photos_with(model.to_str().unwrap(), extra, &[])
}

/// [`compare_four_photos`] with a hub id or a folder, and environment variables.
fn compare_four_photos_with(model: &str, extra: &[&str], env: &[(&str, &Path)]) -> Vec<Vec<f64>> {
    let photos = ["coffee.jpg", "coffee-blur.jpg", "rocket.jpg", "chelsea.jpg"].map(|p| format!("examples/photos/{p}"));
    let mut args = vec!["compare"];
    args.extend(photos.iter().map(String::as_str));
    args.extend(["--model", model, "--json"]);
    args.extend_from_slice(extra);
    let outcome = ok_json(&qrank_env(&args, env));
    outcome["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|stage| {
            stage["probs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// The download users run: `--model owner/name` fetches the checkpoint through the real hub
/// client (from a fake of the hub, `HF_ENDPOINT`; the weights through a redirect, as the hub
/// serves large files) into an empty cache, each file once, with one look at the hub's file
/// list, and answers as the same checkpoint in a folder does; a repository the hub lacks fails
/// with its name and the hub's 404; then, with `HF_HUB_OFFLINE=1` and the hub gone, the cache
/// alone answers.
#[test]
fn a_hub_id_is_downloaded_into_the_cache_and_answers_as_the_folder_does() {
    let model = tiny_model(false);
    let from_folder = compare_four_photos(model.path(), &[]);
    let cache = tempfile::tempdir().unwrap();
    let hub = FakeHub::serve("qrank-test/tiny-co-instruct", model.path());
    let endpoint = hub.endpoint();
    let online = [
        ("HF_ENDPOINT", Path::new(&endpoint)),
        ("HF_HUB_CACHE", cache.path()),
        ("HF_HUB_OFFLINE", Path::new("0")),
    ];
    let from_hub = compare_four_photos_with("qrank-test/tiny-co-instruct", &[], &online);
    assert_eq!(from_hub, from_folder);
    let mut downloaded = hub.downloaded();
    downloaded.sort();
    assert_eq!(downloaded, ["config.json", "model.safetensors", "tokenizer.json"]);
    // Counting the weights for `--precision auto` and loading them share one look at the hub.
    assert_eq!(hub.listed(), 1);
    let missing = qrank_env(
        &[
            "compare",
            "examples/photos/coffee.jpg",
            "examples/photos/rocket.jpg",
            "--model",
            "qrank-test/missing",
        ],
        &online,
    );
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("qrank-test/missing") && stderr.contains("404"),
        "{stderr}"
    );
    drop(hub);

    let offline = [("HF_HUB_CACHE", cache.path()), ("HF_HUB_OFFLINE", Path::new("1"))];
    let from_cache = compare_four_photos_with("qrank-test/tiny-co-instruct", &[], &offline);
    assert_eq!(from_cache, from_folder);
}

/// `--precision q8` (the language model in 8-bit blocks) answers as f32 does, to within 0.02 on
/// every stage probability (measured: 0.0054), and ranks a folder with the same number of
/// calls. A name it does not know is a usage error that lists the ones it does.
#[test]
fn q8_answers_as_f32_does() {
    let model = tiny_model(false);
    let (f32, q8) = (
        compare_four_photos(model.path(), &[]),
        compare_four_photos(model.path(), &["--precision", "q8"]),
    );
    let gap = f32
        .iter()
        .flatten()
        .zip(q8.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!("largest stage-probability gap, q8 against f32: {gap:.4}");
    assert_eq!(q8.len(), 3);
    assert!(gap > 0.0 && gap < 0.02, "f32 {f32:?}\nq8 {q8:?}");

    let ranked = ok_json(&rank_photos_with_tiny_model(&["--format", "json", "--precision", "q8"]));
    assert_eq!(ranked["stats"]["num_model_calls"], 20);
    assert_eq!(ranked["stats"]["precision"], "q8", "the report says what judged it");
    assert_eq!(named_scores(&ranked).len(), 20);

    // `auto` on the CPU reads the checkpoint's weights to see whether f32 fits the memory
    // before it loads anything, for `rank` as for `compare`: here weights that are not
    // safetensors at all.
    let unreadable = tempfile::tempdir().unwrap();
    std::fs::write(unreadable.path().join("config.json"), "{}").unwrap();
    std::fs::write(unreadable.path().join("model.safetensors"), "not safetensors").unwrap();
    for inputs in [
        &["rank", "examples/photos"][..],
        &["compare", "examples/photos/coffee.jpg", "examples/photos/rocket.jpg"],
    ] {
        let mut args = inputs.to_vec();
        args.extend(["--model", unreadable.path().to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&qrank(&args).stderr).into_owned();
        assert!(stderr.contains("reading the weights of"), "{}: {stderr}", inputs[0]);
    }

    let wrong = rank_photos_with_tiny_model(&["--precision", "int4"]);
    assert_eq!(wrong.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("expected auto, f32, bf16, f16 or q8"), "{stderr}");
}

/// Images met again take their tokens from the embedding cache, and the run's stats say so:
/// every image is missed once and then found, unless `--embedding-cache-mib 0` leaves no room.
#[test]
fn rank_reports_the_embedding_cache_and_its_size_option() {
    let cached = ok_json(&rank_photos_with_tiny_model(&["--format", "json"]));
    let cache = &cached["stats"]["embedding_cache"];
    let (hits, misses) = (cache["hits"].as_u64().unwrap(), cache["misses"].as_u64().unwrap());
    assert_eq!(misses, 20, "each of the 20 photos is worked out once: {cache}");
    assert!(
        hits >= 20,
        "20 calls of 2-4 photos meet each photo about 4 times: {cache}"
    );
    assert!(cache["bytes"].as_u64().unwrap() > 0);

    let uncached = ok_json(&rank_photos_with_tiny_model(&[
        "--format",
        "json",
        "--embedding-cache-mib",
        "0",
    ]));
    let cache = &uncached["stats"]["embedding_cache"];
    assert_eq!(cache["hits"], 0, "{cache}");
    assert_eq!(
        cache["misses"].as_u64().unwrap(),
        hits + misses,
        "the same plan, every photo worked out"
    );
    // The cache changes no answer (tokens may differ in the last bits with the batch they were
    // worked out in, so scores are compared to a tolerance).
    assert_same_ranking(&cached, &uncached);
}

/// With no memory for images, every photo waits between rounds in a file in the temporary
/// folder and comes back the same: the ranking is the one made in memory, the run's stats count
/// the photos that waited on disk, and the files are gone when the run ends.
#[test]
fn rank_with_no_image_memory_keeps_the_photos_on_disk_and_ranks_the_same() {
    let in_memory = ok_json(&rank_photos_with_tiny_model(&["--format", "json"]));
    assert_eq!(in_memory["stats"]["images_on_disk"], 0);
    let tmp = tempfile::tempdir().unwrap();
    let on_disk = ok_json(&rank_photos_with_tiny_model_env(
        &["--format", "json", "--image-memory-mib", "0"],
        &[("TMPDIR", tmp.path())],
    ));
    assert_eq!(on_disk["stats"]["images_on_disk"], 20, "{}", on_disk["stats"]);
    assert_same_ranking(&in_memory, &on_disk);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the spilled files are deleted: {left:?}");
}

/// A temporary folder that cannot be written is warned about, and the images it would have held
/// stay in memory: the run still ranks every photo.
#[test]
fn rank_with_an_unwritable_temporary_folder_warns_and_ranks_in_memory() {
    let out = rank_photos_with_tiny_model_env(
        &["--format", "json", "--image-memory-mib", "0"],
        &[("TMPDIR", Path::new("/nonexistent/qrank-tmp"))],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("qrank: warning: the temporary folder cannot be written")
            && stderr.contains("/nonexistent/qrank-tmp"),
        "{stderr}"
    );
    let report = ok_json(&out);
    assert_eq!(report["ranking"]["items"].as_array().unwrap().len(), 20);
    assert_eq!(report["stats"]["images_on_disk"], 0);
}

/// A drop-worst run compares near its cut and says, per image, whether it is dropped and how
/// likely it is to belong among the dropped. Exactly 5 of the 20 are, so the chances add up to
/// 5 (up to the noise of the draws that give them), and they are higher for the dropped. The
/// tiny model's random weights tell the photos apart poorly, so no chance is near 0 or 1.
#[test]
fn rank_drop_worst_marks_the_dropped_with_p_dropped() {
    let out = rank_photos_with_tiny_model(&["--drop-worst", "0.25"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("rank,name,score,std_error,connected,dropped,p_dropped,error")
    );
    let rows: Vec<(bool, f64)> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[5].parse().unwrap(), fields[6].parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len(), 20);
    for (i, &(dropped, p)) in rows.iter().enumerate() {
        assert_eq!(dropped, i >= 15, "the worst 5 of 20: {rows:?}");
        assert!((0.0..=1.0).contains(&p), "{rows:?}");
    }
    let total: f64 = rows.iter().map(|&(_, p)| p).sum();
    assert!((total - 5.0).abs() < 0.3, "chances add up to {total}: {rows:?}");
    let mean = |dropped: bool| {
        let ps: Vec<f64> = rows.iter().filter(|r| r.0 == dropped).map(|r| r.1).collect();
        ps.iter().sum::<f64>() / ps.len() as f64
    };
    assert!(mean(true) > mean(false), "{rows:?}");
}

#[test]
fn model_errors_are_clear() {
    let out = qrank(&[
        "compare",
        "examples/photos/coffee.jpg",
        "examples/photos/rocket.jpg",
        "--model",
        "brisque",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("comparison model"));
    let empty = tempfile::tempdir().unwrap();
    let out = qrank(&["rank", "examples/photos", "--model", empty.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("config.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        qrank(&["rank", "examples/photos", "--model", "nonsense"]).status.code(),
        Some(64)
    );
}

/// A model that fails on every group (a checkpoint whose position table holds no prompt) fails
/// the run with the model's reason, rather than printing a ranking fitted to no answers, even
/// when the run has fewer groups (6 images at 1 call per image) than the 8 failures a running
/// job bears before it asks whether the model works.
#[test]
fn rank_fails_when_the_model_fails_on_most_groups() {
    let photos = tempfile::tempdir().unwrap();
    for name in [
        "astronaut.jpg",
        "chelsea.jpg",
        "coffee.jpg",
        "coffee-blur.jpg",
        "rocket.jpg",
        "rocket-noise.jpg",
    ] {
        std::fs::copy(repo().join("examples/photos").join(name), photos.path().join(name)).unwrap();
    }
    let model = tiny_model(true);
    let out = qrank(&[
        "rank",
        photos.path().to_str().unwrap(),
        "--model",
        model.path().to_str().unwrap(),
        "--budget",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    // "the model failed on N of N groups", N below the 8 that a running job bears.
    let (failed, of) = stderr
        .split_once("the model failed on ")
        .and_then(|(_, rest)| rest.split_once(" groups"))
        .and_then(|(counts, _)| counts.split_once(" of "))
        .and_then(|(failed, of)| Some((failed.parse::<u32>().ok()?, of.parse::<u32>().ok()?)))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(failed == of && (1..8).contains(&failed), "{stderr}");
    assert!(stderr.contains("exceed max_position_embeddings 8"), "{stderr}");
}

/// The `--resume` folder's answers, one per line of its part files.
fn checkpointed_answers(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("checkpoint"))
        .map(|parts| {
            parts
                .map(|part| std::fs::read_to_string(part.unwrap().path()).unwrap().lines().count())
                .sum()
        })
        .unwrap_or(0)
}

/// `qrank rank examples/photos` with `model` at 2 calls per image (unless `extra` says), with
/// `--resume dir`.
fn rank_resumable(model: &Path, dir: &Path, extra: &[&str]) -> Output {
    let budget = if extra.contains(&"--budget") {
        vec![]
    } else {
        vec!["--budget", "2"]
    };
    let mut args = vec![
        "rank",
        "examples/photos",
        "--model",
        model.to_str().unwrap(),
        "--format",
        "json",
        "--resume",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(&budget);
    args.extend_from_slice(extra);
    qrank(&args)
}

/// A run stopped part-way leaves its answers in its `--resume` folder. The same command takes
/// them up: it asks the model only about the groups not yet answered, and ends with the ranking
/// an unstopped run gives. Answers to another question are not reused, and `qrank fit` re-fits
/// the folder.
#[test]
fn rank_resume_takes_up_a_stopped_run() {
    let model = tiny_model(false);
    let whole = tempfile::tempdir().unwrap();
    let unstopped = ok_json(&rank_resumable(model.path(), whole.path(), &[]));
    assert_eq!(unstopped["stats"]["num_model_calls"], 40);
    assert_eq!(unstopped["stats"]["num_groups_resumed"], 0);
    assert_eq!(checkpointed_answers(whole.path()), 40);

    // What a run stopped after its first three checkpoints leaves.
    let stopped = tempfile::tempdir().unwrap();
    std::fs::create_dir(stopped.path().join("checkpoint")).unwrap();
    for part in ["000000.jsonl", "000001.jsonl", "000002.jsonl"] {
        let from = whole.path().join("checkpoint").join(part);
        std::fs::copy(from, stopped.path().join("checkpoint").join(part)).unwrap();
    }
    let kept = checkpointed_answers(stopped.path());
    assert!(kept > 0 && kept < 40, "{kept}");

    let out = rank_resumable(model.path(), stopped.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let resumed = ok_json(&out);
    assert_eq!(resumed["stats"]["num_groups_resumed"], kept, "{stderr}");
    assert_eq!(resumed["stats"]["num_model_calls"], 40 - kept);
    assert_same_ranking(&unstopped, &resumed);
    assert!(
        stderr.contains(&format!("qrank: resuming: {kept} answers saved earlier")),
        "{stderr}"
    );
    assert_eq!(checkpointed_answers(stopped.path()), 40, "no part written over");

    let out = rank_resumable(model.path(), stopped.path(), &["--criterion", "sharpness"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let other_question = ok_json(&out);
    assert_eq!(other_question["stats"]["num_groups_resumed"], 0);
    assert_eq!(other_question["stats"]["num_model_calls"], 40);
    assert!(
        stderr.contains("qrank: warning: 40 answers saved earlier are from another model or question"),
        "{stderr}"
    );

    let refit = qrank(&["fit", stopped.path().to_str().unwrap(), "--format", "json"]);
    let stderr = String::from_utf8_lossy(&refit.stderr).into_owned();
    assert_eq!(ok_json(&refit)["ranking"]["items"].as_array().unwrap().len(), 20);
    assert!(
        stderr.contains("holds answers of 2 models or questions, fitted together as one")
            && stderr.contains("\"overall\"")
            && stderr.contains("\"sharpness\""),
        "{stderr}"
    );
}

/// A finished run's answers serve a later run with a larger budget: the plan asks for the same
/// groups first, so only the calls the budget adds go to the model, and the ranking is the one
/// the larger budget gives from scratch.
#[test]
fn rank_resume_spends_a_raised_budget_on_new_calls_only() {
    let model = tiny_model(false);
    let dir = tempfile::tempdir().unwrap();
    ok_json(&rank_resumable(model.path(), dir.path(), &[]));
    let raised = ok_json(&rank_resumable(model.path(), dir.path(), &["--budget", "3"]));
    assert_eq!(raised["stats"]["num_groups_resumed"], 40);
    assert_eq!(raised["stats"]["num_model_calls"], 20);
    let fresh = tempfile::tempdir().unwrap();
    let from_scratch = ok_json(&rank_resumable(model.path(), fresh.path(), &["--budget", "3"]));
    assert_same_ranking(&from_scratch, &raised);
}

/// Start `qrank rank examples/photos` with `model` at 2 calls per image and `--resume dir`, and
/// stop it with `signal` once 8 answers are saved; its exit status and stderr.
fn stop_part_way(model: &Path, dir: &Path, signal: &str) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qrank"))
        .args(["rank", "examples/photos", "--model", model.to_str().unwrap()])
        .args(["--budget", "2", "--resume", dir.to_str().unwrap()])
        .current_dir(support::repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while checkpointed_answers(dir) < 8 && std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let sent = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal}");
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A run killed while it compares (a crash, a closed laptop) is taken up by the same command:
/// every answer checkpointed before the kill is reused, and the model is asked for the rest.
#[test]
fn rank_resume_survives_a_kill() {
    let model = tiny_model(false);
    let reference = tempfile::tempdir().unwrap();
    let unstopped = ok_json(&rank_resumable(model.path(), reference.path(), &[]));
    let total = unstopped["stats"]["num_model_calls"].as_u64().unwrap() as usize;

    let dir = tempfile::tempdir().unwrap();
    let (status, _) = stop_part_way(model.path(), dir.path(), "-KILL");
    assert_eq!(status.code(), None, "killed by a signal");
    let kept = checkpointed_answers(dir.path());
    assert!(
        kept >= 8 && kept < total,
        "the run was killed after {kept} of {total} answers"
    );

    let resumed = ok_json(&rank_resumable(model.path(), dir.path(), &[]));
    assert_eq!(resumed["stats"]["num_groups_resumed"], kept);
    assert_eq!(
        resumed["stats"]["num_model_calls"].as_u64().unwrap() as usize,
        total - kept
    );
    assert_same_ranking(&unstopped, &resumed);
}

/// Ctrl-C saves every answer given so far before the run stops, says how many, and exits with
/// 130; the same command then asks the model about none of them again.
#[test]
fn rank_resume_saves_every_answer_on_ctrl_c() {
    let model = tiny_model(false);
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = stop_part_way(model.path(), dir.path(), "-INT");
    assert_eq!(status.code(), Some(130), "{stderr}");
    let answers: usize = stderr
        .split("interrupted after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of answers: {stderr}"));
    assert!(
        stderr.contains("answers, all saved; the same command with --resume"),
        "{stderr}"
    );
    assert_eq!(checkpointed_answers(dir.path()), answers, "every answer given is saved");
    let resumed = ok_json(&rank_resumable(model.path(), dir.path(), &[]));
    assert_eq!(resumed["stats"]["num_groups_resumed"], answers);
}

/// A `--resume` folder that cannot be written is refused before the model loads, naming it.
#[test]
fn rank_refuses_an_unwritable_resume_folder() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let beneath = file.path().join("checkpoints");
    let out = qrank(&["rank", "examples/photos", "--resume", beneath.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--resume {}", beneath.display())), "{stderr}");
}
