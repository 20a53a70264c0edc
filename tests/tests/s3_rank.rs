//! End to end: the real `qrank` binary ranks images that live in a real S3-compatible server.
//!
//! These tests prove what unit tests cannot: that `qrank rank s3://…` lists, fetches and names
//! objects through `object_store` with credentials taken from the `AWS_*` environment, that bad
//! files in a bucket are reported one by one instead of failing the run, that the exit code
//! tells a script what happened, and that a `--resume` folder can be a bucket prefix.
//!
//! The server is described by `QRANK_TEST_S3_ENDPOINT`, `QRANK_TEST_S3_BUCKET`,
//! `QRANK_TEST_S3_REGION`, `QRANK_TEST_S3_ACCESS_KEY` and `QRANK_TEST_S3_SECRET_KEY`
//! (`.ci/start-s3.sh` starts SeaweedFS, and `.ci/lib.sh` sets them). Without them each test
//! skips, unless `QRANK_REQUIRE_SERVERS=1`: then a missing server is a failure, so CI can never
//! pass by skipping. Every test works under its own unique prefix and deletes it when done.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use qrank_tests::{bad_fixture_kinds, files_in, qrank_bin, tiny_model, workspace_root, S3Server};
use serde_json::Value;

/// Exit codes documented in `qrank --help`.
const EXIT_OK: i32 = 0;
const EXIT_FAILED: i32 = 1;
const EXIT_SKIPPED_SOME: i32 = 2;
const EXIT_USAGE: i32 = 64;

/// The test server, or `None` (after saying why) when the test should skip.
fn s3_server() -> Option<S3Server> {
    S3Server::from_env("start one with `bash .ci/start-s3.sh` and `source .ci/lib.sh`")
}

/// A fresh prefix in the test bucket. Dropping it deletes every object under it, so each test
/// cleans up after itself even when an assertion fails.
struct Prefix {
    config: S3Server,
    store: AmazonS3,
    runtime: tokio::runtime::Runtime,
    /// The key prefix, without a trailing slash.
    name: String,
}

impl Prefix {
    /// A prefix no other test or earlier run can share: test name, process id and clock.
    fn new(config: &S3Server, test: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        Self {
            config: config.clone(),
            store: config.store(),
            runtime,
            name: format!("qrank-tests/{test}-{}-{nanos}", std::process::id()),
        }
    }

    /// Store `bytes` at `PREFIX/key`.
    fn put(&self, key: &str, bytes: Vec<u8>) {
        let location = Path::from(format!("{}/{key}", self.name));
        self.runtime
            .block_on(self.store.put(&location, PutPayload::from(bytes)))
            .unwrap_or_else(|e| panic!("uploading {location}: {e}"));
    }

    /// Upload each file under its own file name; return those names.
    fn upload_files(&self, files: &[PathBuf]) -> Vec<String> {
        files
            .iter()
            .map(|file| {
                let key = file_name(file);
                let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
                self.put(&key, bytes);
                key
            })
            .collect()
    }

    /// The URL `qrank rank` takes: `s3://BUCKET/PREFIX/`.
    fn url(&self) -> String {
        format!("s3://{}/{}/", self.config.bucket, self.name)
    }

    /// The name qrank reports for `PREFIX/key`.
    fn display_name(&self, key: &str) -> String {
        format!("{}{key}", self.url())
    }

    /// Every key under the prefix, relative to it, in order.
    fn keys(&self) -> Vec<String> {
        let prefix = Path::from(self.name.as_str());
        let objects: Vec<_> = self
            .runtime
            .block_on(self.store.list(Some(&prefix)).try_collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("listing {prefix}: {e}"));
        let mut keys: Vec<String> = objects
            .into_iter()
            .map(|o| {
                o.location
                    .as_ref()
                    .trim_start_matches(&format!("{}/", self.name))
                    .to_owned()
            })
            .collect();
        keys.sort();
        keys
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let prefix = Path::from(self.name.as_str());
        let cleanup = async {
            let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
            for object in objects {
                self.store.delete(&object.location).await?;
            }
            Ok::<_, object_store::Error>(())
        };
        // Never panic in drop: a failed cleanup must not hide the test's own failure.
        if let Err(e) = self.runtime.block_on(cleanup) {
            eprintln!(
                "warning: could not delete s3://{}/{}/: {e}",
                self.config.bucket, self.name
            );
        }
    }
}

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// stdout as JSON; panics with the whole run shown when it is not.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Run `qrank rank SOURCE --format json` against the test server, with `secret` as the key.
///
/// The child sees only the `AWS_*` variables set here: inherited ones (a developer's profile,
/// a session token, a CA bundle) could change how it authenticates and make the test depend on
/// the machine.
fn rank(config: &S3Server, secret: &str, source: &str, extra_args: &[&str]) -> Run {
    let mut command = Command::new(qrank_bin());
    command.args(["rank", source, "--format", "json"]).args(extra_args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .env("AWS_ENDPOINT", &config.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false")
        .env("AWS_REGION", &config.region)
        .env("AWS_ACCESS_KEY_ID", &config.access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", qrank_bin().display()));
    Run {
        code: output.status.code().expect("qrank exited, not killed by a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn file_name(path: &FsPath) -> String {
    path.file_name().expect("a file").to_string_lossy().into_owned()
}

/// The example photos: real JPEGs that every model can rank.
fn good_photos() -> Vec<PathBuf> {
    files_in("examples/photos", &["jpg"])
}

/// `name -> score` of every ranked item, after checking the items are ranked 1..=n in order of
/// decreasing score with finite numbers.
fn ranked_scores(report: &Value) -> BTreeMap<String, f64> {
    let items = report["ranking"]["items"]
        .as_array()
        .expect("ranking.items is an array");
    let mut previous = f64::INFINITY;
    let mut scores = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["rank"].as_u64(), Some(i as u64 + 1), "ranks run 1..=n: {item}");
        let score = item["score"].as_f64().expect("numeric score");
        assert!(
            score.is_finite() && score <= previous,
            "scores are finite and non-increasing: {item}"
        );
        assert!(
            item["std_error"].as_f64().is_some_and(f64::is_finite),
            "finite std_error: {item}"
        );
        previous = score;
        let name = item["name"].as_str().expect("string name").to_owned();
        assert!(
            scores.insert(name, score).is_none(),
            "each image is ranked once: {item}"
        );
    }
    scores
}

/// `name -> kind` of every reported error, after checking each reason names its file.
fn error_kinds(report: &Value) -> BTreeMap<String, String> {
    let errors = report["errors"].as_array().expect("errors is an array");
    errors
        .iter()
        .map(|error| {
            let name = error["name"].as_str().expect("string name");
            let reason = error["reason"].as_str().expect("string reason");
            assert!(reason.contains(name), "the reason names the file: {error}");
            (name.to_owned(), error["kind"].as_str().expect("string kind").to_owned())
        })
        .collect()
}

/// A prefix holding good photos and broken files: every photo is ranked under its `s3://` name,
/// every broken file is listed in `errors` with the right kind, and the exit code is 2 ("some
/// files skipped"). Proves one bad object never sinks a run, and a user can find each culprit.
#[test]
fn ranks_good_images_and_lists_each_bad_file_with_its_kind() {
    let Some(s3) = s3_server() else { return };
    let prefix = Prefix::new(&s3, "mixed");
    let good = prefix.upload_files(&good_photos());
    let bad = prefix.upload_files(&files_in("engine/tests/data/images/bad", &[]));

    let run = rank(&s3, &s3.secret_key, &prefix.url(), &[]);
    assert_eq!(run.code, EXIT_SKIPPED_SOME, "{run:#?}");
    let report = run.json();

    let ranked: Vec<String> = ranked_scores(&report).into_keys().collect();
    let expected: Vec<String> = good.iter().map(|key| prefix.display_name(key)).collect();
    assert_eq!(ranked, expected, "every good image is ranked, under its s3:// name");
    assert_eq!(
        report["stats"]["num_images"].as_u64(),
        Some(good.len() as u64),
        "{report}"
    );

    let expected_errors: BTreeMap<String, String> = bad_fixture_kinds()
        .into_iter()
        .map(|(file, kind)| (prefix.display_name(file), kind.to_owned()))
        .collect();
    assert_eq!(
        bad.len(),
        expected_errors.len(),
        "every bad fixture has an expected kind"
    );
    assert_eq!(
        error_kinds(&report),
        expected_errors,
        "each bad file is reported with its kind"
    );
    for name in expected_errors.keys() {
        assert!(
            run.stderr.contains(name),
            "stderr lists the skipped {name}:\n{}",
            run.stderr
        );
    }
}

/// A prefix of good photos only exits 0 with no errors, and each photo gets exactly the score it
/// gets when ranked from a local folder. Proves reading through S3 changes nothing about the
/// bytes or the ranking.
#[test]
fn ranks_a_clean_prefix_exactly_as_the_local_folder() {
    let Some(s3) = s3_server() else { return };
    let prefix = Prefix::new(&s3, "clean");
    let photos = good_photos();
    prefix.upload_files(&photos);

    let run = rank(&s3, &s3.secret_key, &prefix.url(), &[]);
    assert_eq!(run.code, EXIT_OK, "{run:#?}");
    let report = run.json();
    assert_eq!(report["errors"], Value::Array(Vec::new()), "no errors: {report}");
    let from_s3 = ranked_scores(&report);

    let folder = workspace_root().join("examples/photos");
    let local = Command::new(qrank_bin())
        .args(["rank", &folder.to_string_lossy(), "--format", "json"])
        .output()
        .expect("running qrank on the local folder");
    assert_eq!(local.status.code(), Some(EXIT_OK), "{local:#?}");
    let local_report: Value = serde_json::from_slice(&local.stdout).expect("local run prints JSON");
    let from_folder = ranked_scores(&local_report);

    // Compare by file name: the two runs name the same photo by different bases.
    let by_file = |scores: BTreeMap<String, f64>| -> BTreeMap<String, f64> {
        scores
            .into_iter()
            .map(|(name, score)| (name.rsplit('/').next().expect("a name").to_owned(), score))
            .collect()
    };
    let (from_s3, from_folder) = (by_file(from_s3), by_file(from_folder));
    assert_eq!(from_s3.len(), photos.len(), "every photo is ranked: {from_s3:?}");
    assert_eq!(from_s3, from_folder, "S3 and local folder give the same scores");
}

/// Without `--recursive` only the prefix's direct children are ranked; with it, sub-prefixes
/// are included and named by their full key. Proves the listing respects S3's `/` hierarchy.
#[test]
fn recursive_flag_descends_into_sub_prefixes() {
    let Some(s3) = s3_server() else { return };
    let prefix = Prefix::new(&s3, "recursive");
    let photos = good_photos();
    let read = |path: &PathBuf| std::fs::read(path).expect("reading a photo");
    prefix.put("top.jpg", read(&photos[0]));
    prefix.put("sub/nested.jpg", read(&photos[1]));

    let shallow = rank(&s3, &s3.secret_key, &prefix.url(), &[]);
    assert_eq!(shallow.code, EXIT_OK, "{shallow:#?}");
    let names: Vec<String> = ranked_scores(&shallow.json()).into_keys().collect();
    assert_eq!(names, vec![prefix.display_name("top.jpg")], "only direct children");

    let deep = rank(&s3, &s3.secret_key, &prefix.url(), &["--recursive"]);
    assert_eq!(deep.code, EXIT_OK, "{deep:#?}");
    let names: Vec<String> = ranked_scores(&deep.json()).into_keys().collect();
    let expected = vec![prefix.display_name("sub/nested.jpg"), prefix.display_name("top.jpg")];
    assert_eq!(names, expected, "sub-prefixes too, by full key");
}

/// Check that a run that could not read its source failed cleanly: a failure exit code, no
/// ranking on stdout, and an error on stderr that names the bucket and the HTTP status.
fn assert_source_failure(run: &Run, bucket: &str, status: &str) {
    assert!(
        run.code == EXIT_FAILED || run.code == EXIT_USAGE,
        "exit code 1 or 64: {run:#?}"
    );
    assert!(run.stdout.trim().is_empty(), "no ranking is written: {run:#?}");
    assert!(run.stderr.starts_with("qrank: error:"), "one error line: {run:#?}");
    assert!(
        run.stderr.contains(bucket),
        "the error names the bucket {bucket}: {run:#?}"
    );
    assert!(
        run.stderr.contains(status),
        "the error gives the status {status}: {run:#?}"
    );
}

/// A bucket that does not exist fails the run (it is not "zero images") and says which bucket.
/// Proves a typo in the URL is caught, not reported as an empty batch.
#[test]
fn missing_bucket_fails_and_names_the_bucket() {
    let Some(s3) = s3_server() else { return };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let bucket = format!("qrank-missing-{nanos}");
    let run = rank(&s3, &s3.secret_key, &format!("s3://{bucket}/photos/"), &[]);
    assert_source_failure(&run, &bucket, "404");
}

/// A wrong secret key is refused by the server (SeaweedFS checks signatures, as AWS does), and
/// the run fails saying so, rather than ranking nothing. Proves credentials really reach the
/// server from the `AWS_*` environment.
#[test]
fn wrong_secret_fails_and_names_the_bucket() {
    let Some(s3) = s3_server() else { return };
    let prefix = Prefix::new(&s3, "wrong-secret");
    prefix.upload_files(&good_photos()[..1]);
    let run = rank(&s3, "not-the-secret", &prefix.url(), &[]);
    assert_source_failure(&run, &s3.bucket, "403");
}

/// `qrank rank --resume s3://...` keeps its answers in the bucket, and the same command takes
/// every one of them from there: the model is asked nothing the second time. Only numbered
/// checkpoint parts are left under the prefix (the write check removes its probe).
#[test]
fn resume_keeps_a_runs_answers_in_the_bucket() {
    let Some(s3) = s3_server() else { return };
    let prefix = Prefix::new(&s3, "resume");
    let model = tiny_model(false);
    let folder = workspace_root().join("examples/photos");
    let args = [
        "--model",
        model.path().to_str().expect("a UTF-8 path"),
        "--budget",
        "2",
        "--resume",
        &prefix.url(),
    ];
    let first = rank(&s3, &s3.secret_key, &folder.to_string_lossy(), &args);
    assert_eq!(first.code, EXIT_OK, "{first:#?}");
    assert_eq!(first.json()["stats"]["num_model_calls"], 40, "{first:#?}");
    let keys = prefix.keys();
    assert!(!keys.is_empty(), "answers are saved");
    assert!(
        keys.iter()
            .all(|k| k.starts_with("checkpoint/") && k.ends_with(".jsonl")),
        "{keys:?}"
    );

    let again = rank(&s3, &s3.secret_key, &folder.to_string_lossy(), &args);
    assert_eq!(again.code, EXIT_OK, "{again:#?}");
    let stats = &again.json()["stats"];
    assert_eq!(
        (stats["num_groups_resumed"].as_u64(), stats["num_model_calls"].as_u64()),
        (Some(40), Some(0))
    );
}
