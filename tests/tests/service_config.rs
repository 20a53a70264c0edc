//! `qrank serve`'s configuration at the process edge: `--check-config` answers 0 or 64 without
//! binding anything, and a bad configuration stops `qrank serve` with 64 before any port is
//! bound or any broker is contacted. Needs no servers.

mod service_support;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use qrank_tests::qrank_bin;

const EXIT_OK: i32 = 0;
const EXIT_USAGE: i32 = 64;

/// `qrank serve ARGS` with only the given `QRANK_*__*` settings.
fn serve(args: &[&str], settings: &[(&str, &str)]) -> Output {
    let mut command = Command::new(qrank_bin());
    command.arg("serve").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("QRANK_") && name.to_string_lossy().contains("__") {
            command.env_remove(name);
        }
    }
    command.envs(settings.iter().copied());
    command.output().expect("running qrank serve")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The defaults are valid, and a file plus environment overrides are merged and checked.
#[test]
fn check_config_accepts_a_good_configuration() {
    let output = serve(&["--check-config"], &[]);
    assert_eq!(output.status.code(), Some(EXIT_OK), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("configuration ok"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("qrank.toml");
    std::fs::write(
        &file,
        "[amqp]\nurl = \"amqps://user:pw@broker.example/vh\"\nprefetch = 8\n\n[shutdown]\ngrace_period_secs = 60\n",
    )
    .unwrap();
    let output = serve(
        &["--config", file.to_str().unwrap(), "--check-config"],
        &[("QRANK_PIPELINE__NUM_LOADERS", "4")],
    );
    assert_eq!(output.status.code(), Some(EXIT_OK), "{}", stderr(&output));
}

/// Each kind of mistake exits 64 and names the key at fault; a password never shows.
#[test]
fn check_config_rejects_bad_values_with_64() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[amqp]\nprefech = 8\n").unwrap();
    // (arguments, settings, what the error must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![("QRANK_AMQP__PREFETCH", "0")], "amqp.prefetch"),
        (vec![], vec![("QRANK_AMQP__URL", "http://user:hunter2@x/")], "amqp.url"),
        (vec![], vec![("QRANK_HTTP__LISTEN", "not an address")], "listen"),
        (vec![], vec![("QRANK_NOSUCH__KEY", "1")], "nosuch"),
        (vec!["--config", typo.to_str().unwrap()], vec![], "prefech"),
        (vec!["--config", "/no/such/qrank.toml"], vec![], "/no/such/qrank.toml"),
        (
            vec![],
            vec![("QRANK_PIPELINE__MAX_IMAGE_PIXELS", "0")],
            "pipeline.max_image_pixels",
        ),
        (vec![], vec![("QRANK_MODEL__DEVICE", "gpu0")], "model.device"),
        (
            vec![],
            vec![("QRANK_PIPELINE__SPILL_DIR", "/no/such/spill")],
            "pipeline.spill_dir /no/such/spill",
        ),
    ];
    for (mut args, settings, named) in cases {
        args.push("--check-config");
        let output = serve(&args, &settings);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(EXIT_USAGE), "{args:?} {settings:?}: {text}");
        assert!(
            text.contains(named),
            "{args:?} {settings:?} should name {named}: {text}"
        );
        assert!(!text.contains("hunter2"), "the password leaked: {text}");
    }
}

/// Without `--check-config`, a bad configuration still exits 64 at once, reporting the bad key
/// rather than a clash on the port it would have bound, which this test holds.
#[test]
fn serve_reports_bad_configuration_before_binding() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let started = Instant::now();
    let output = serve(&[], &[("QRANK_HTTP__LISTEN", &addr), ("QRANK_AMQP__PREFETCH", "0")]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(EXIT_USAGE), "{text}");
    assert!(text.contains("amqp.prefetch"), "{text}");
    assert!(!text.contains("binding"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
