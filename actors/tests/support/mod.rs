//! Helpers shared by the CLI tests: where the repository is, and how to run `qrank` in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace root, where the example photos and the golden data live.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Run the `qrank` binary of this build in the repository root.
pub fn qrank(args: &[&str]) -> Output {
    qrank_env(args, &[])
}

/// [`qrank`] with these environment variables.
pub fn qrank_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qrank"))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(repo())
        .output()
        .unwrap()
}

/// The command's stdout as JSON.
pub fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}
