//! The chart's Grafana dashboard against a real Prometheus scraping a real `qrank serve` that has
//! ranked a job and dead-lettered a poison one: every query of every panel (and of the template
//! variables) runs without error, and every panel shows data (zeros for what did not happen). The
//! Prometheus server is Debian's, unpacked by `.ci/install-prometheus.sh`, on 127.0.0.1 only.

mod service_support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use qrank_tests::{files_in, server_env, skip, workspace_root};
use service_support::{free_port, http_get, job, Broker, Sandbox, Servers, Service};

/// The labels a Kubernetes scrape adds, which the dashboard selects by.
const NAMESPACE: &str = "qrank-test";
const POD: &str = "qrank-0";

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_runs_and_a_served_job_shows_on_it() {
    let Some(servers) = Servers::from_env() else { return };
    let Some(prometheus) = prometheus_binary() else { return };
    let sandbox = Sandbox::new(&servers, "dashboard");
    let photos: Vec<_> = files_in("examples/photos", &["jpg"]).into_iter().take(8).collect();
    sandbox.upload("images", &photos).await;
    let service = Service::start(&sandbox, &[("QRANK_MODEL__COMPARE_GROUPS", "true")]).await;
    let broker = Broker::connect(&sandbox).await;
    let mut results = broker.results("dashboard.results").await;
    broker
        .publish_job(&job(&sandbox, "job-dashboard", "dashboard.results"))
        .await;
    let (result, _) = Broker::expect_result(&mut results, Duration::from_secs(60), &[&service]).await;
    assert_eq!(result.failure, "");
    let poison = BasicProperties::default().with_type("qrank.v1.RankJob".into());
    broker.publish_raw(b"\xff not protobuf", poison).await;
    broker
        .dead_letter(Duration::from_secs(20))
        .await
        .expect("a dead letter");

    let prometheus = Prometheus::start(prometheus, service.http).await;
    prometheus.wait_for_scrapes(3).await;

    let dashboard: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workspace_root().join("helm/qrank/dashboards/qrank.json")).expect("the dashboard"),
    )
    .expect("dashboard JSON");
    let mut empty = Vec::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().expect("a title");
        let mut series = 0;
        for target in panel["targets"].as_array().expect("targets") {
            let expr = grafana_variables(target["expr"].as_str().expect("an expr"));
            series += prometheus
                .query(&expr)
                .await
                .unwrap_or_else(|e| panic!("{title}: {expr}: {e}"));
        }
        if series == 0 {
            empty.push(title);
        }
    }
    // Even the panels of what this test does not cause (failed calls, shared groups, actor
    // restarts) show their zeros: every labelled series starts at 0, so that an alert sees the
    // first increase.
    assert!(empty.is_empty(), "panels without data: {empty:?}");
    for variable in dashboard["templating"]["list"].as_array().expect("variables") {
        if variable["type"] == "query" {
            // Grafana's label_values(SELECTOR, LABEL): the selector must find the scraped pod.
            let definition = grafana_variables(variable["definition"].as_str().expect("a definition"));
            let selector = definition
                .strip_prefix("label_values(")
                .and_then(|rest| rest.rsplit_once(','))
                .map(|(selector, _)| selector.to_owned())
                .unwrap_or_else(|| panic!("not label_values(...): {definition}"));
            assert!(
                prometheus.query(&selector).await.expect("the variable's selector") > 0,
                "{definition}"
            );
        }
    }
    broker.close().await;
}

/// The Prometheus server `QRANK_TEST_PROMETHEUS` names, or `None` (after saying why) when the
/// test should skip: unset, or not installed there.
fn prometheus_binary() -> Option<PathBuf> {
    let hint = "install it with `.ci/install-prometheus.sh`, then `source .ci/lib.sh`";
    let [path]: [String; 1] = server_env(&["QRANK_TEST_PROMETHEUS"], hint)?.try_into().ok()?;
    let path = PathBuf::from(path);
    if !path.is_file() {
        return skip(&format!("no Prometheus at {} ({hint})", path.display()));
    }
    Some(path)
}

/// Grafana's variables as this test's scrape has them: a minute for `$__rate_interval` (the
/// scrape is every second), the namespace and pod the scrape labels the target with.
fn grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$namespace", NAMESPACE)
        .replace("$pod", POD)
}

/// A Prometheus server scraping one target every second, killed when dropped.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(binary: PathBuf, target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: qrank\n    \
                 static_configs:\n      - targets: ['{target}']\n        labels: {{namespace: {NAMESPACE}, pod: {POD}}}\n"
            ),
        )
        .expect("writing the config");
        let address = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let prometheus = Self { child, address, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(http_get(prometheus.address, "/-/ready").await, Some((200, _))) {
            assert!(
                Instant::now() < deadline,
                "Prometheus not ready in 30 s:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Wait (up to 30 s) until the target has been scraped `scrapes` times, so that `rate` over
    /// a minute has samples to work with.
    async fn wait_for_scrapes(&self, scrapes: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let query = format!("count_over_time(up{{job=\"qrank\"}}[1m]) >= {scrapes}");
        while self.query(&query).await != Ok(1) {
            assert!(
                Instant::now() < deadline,
                "qrank not scraped {scrapes} times in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Run an instant query: the number of series it returns, or Prometheus's error.
    async fn query(&self, expr: &str) -> Result<usize, String> {
        let (status, body) = http_get(self.address, &format!("/api/v1/query?query={}", percent_encode(expr)))
            .await
            .ok_or("no answer from Prometheus")?;
        let answer: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("{status}: {body}"));
        }
        Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` as a URL query value: every byte but letters, digits and `-._~` as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
