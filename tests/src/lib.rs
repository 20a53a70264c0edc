//! Helpers shared by the integration tests in `tests/tests/`: where the repository and the
//! `qrank` binary are, its fixture files, and the test servers named by the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use object_store::aws::{AmazonS3, AmazonS3Builder};

/// The workspace root: this crate sits one level below it.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `qrank` binary: `QRANK_BIN`, else the debug build under the target folder
/// (`CARGO_TARGET_DIR` or `<workspace>/target`), which the test command builds first.
pub fn qrank_bin() -> PathBuf {
    let bin = match std::env::var_os("QRANK_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), |t| workspace_root().join(t))
            .join("debug")
            .join("qrank"),
    };
    assert!(
        bin.is_file(),
        "qrank binary not found at {}: build it with `cargo build -p actors --bin qrank`, or set QRANK_BIN",
        bin.display()
    );
    bin
}

/// The tiny Co-Instruct test checkpoint laid out as a model folder of its own (random weights:
/// the answers mean nothing, but they are a comparing model's). A `broken` one has a position
/// table too short for any prompt, so that every call fails in the model, as on a GPU gone bad.
pub fn tiny_model(broken: bool) -> tempfile::TempDir {
    let root = workspace_root();
    let golden = root.join("engine/tests/golden/coinstruct-tiny");
    let dir = tempfile::tempdir().expect("a temporary folder");
    for (from, to) in [
        (golden.join("config.json"), "config.json"),
        (golden.join("weights.safetensors"), "model.safetensors"),
        (root.join("actors/tests/data/tiny-tokenizer.json"), "tokenizer.json"),
    ] {
        std::fs::copy(&from, dir.path().join(to)).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
    }
    if broken {
        let path = dir.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("the config")).expect("config JSON");
        assert!(config["max_position_embeddings"].is_u64(), "{config}");
        config["max_position_embeddings"] = 8.into();
        std::fs::write(&path, config.to_string()).expect("writing the config");
    }
    dir
}

/// Sorted files of a repository folder with one of `extensions` (any, if empty). Panics on an
/// empty result, since every caller names a folder of fixtures.
pub fn files_in(folder: &str, extensions: &[&str]) -> Vec<PathBuf> {
    let folder = workspace_root().join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            extensions.is_empty()
                || path
                    .extension()
                    .is_some_and(|ext| extensions.iter().any(|e| ext.eq_ignore_ascii_case(e)))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no test files in {}", folder.display());
    files
}

/// Why each file in `engine/tests/data/images/bad/` must be refused: file name to error kind.
pub fn bad_fixture_kinds() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("bomb.png", "over_limit"),
        ("corrupt.png", "corrupt"),
        ("empty.jpg", "empty"),
        ("notes.txt", "unsupported"),
        ("phone.heic", "unsupported"),
        ("photo.avif", "unsupported"),
        ("truncated.jpg", "truncated"),
        ("truncated.png", "truncated"),
    ])
}

/// The values of the environment variables `names`, in order, or `None` after printing why the
/// test skips. With `QRANK_REQUIRE_SERVERS=1` (as CI sets) a missing variable fails the test
/// instead; `hint` says how to start the servers.
pub fn server_env(names: &[&str], hint: &str) -> Option<Vec<String>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let missing: Vec<&str> = names.iter().copied().filter(|n| var(n).is_none()).collect();
    if !missing.is_empty() {
        return skip(&format!("no test servers: {} not set ({hint})", missing.join(", ")));
    }
    Some(names.iter().map(|n| var(n).expect("checked above")).collect())
}

/// `None`, after printing why the test skips; a failure instead under `QRANK_REQUIRE_SERVERS=1`
/// (CI), where every server a test needs must be there.
pub fn skip<T>(reason: &str) -> Option<T> {
    assert!(
        std::env::var("QRANK_REQUIRE_SERVERS").as_deref() != Ok("1"),
        "QRANK_REQUIRE_SERVERS=1 but {reason}"
    );
    eprintln!("skipping: {reason}");
    None
}

/// The S3 test server that `.ci/start-s3.sh` starts, as `.ci/lib.sh` exports it.
#[derive(Debug, Clone)]
pub struct S3Server {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl S3Server {
    /// The server from the `QRANK_TEST_S3_*` variables, or `None` when the test should skip
    /// (see [`server_env`]).
    pub fn from_env(hint: &str) -> Option<Self> {
        let names = [
            "QRANK_TEST_S3_ENDPOINT",
            "QRANK_TEST_S3_BUCKET",
            "QRANK_TEST_S3_REGION",
            "QRANK_TEST_S3_ACCESS_KEY",
            "QRANK_TEST_S3_SECRET_KEY",
        ];
        let [endpoint, bucket, region, access_key, secret_key]: [String; 5] =
            server_env(&names, hint)?.try_into().ok()?;
        Some(Self {
            endpoint,
            bucket,
            region,
            access_key,
            secret_key,
        })
    }

    /// A client for the test bucket, path-style, as a local server needs.
    pub fn store(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .build()
            .expect("valid S3 client settings")
    }
}
