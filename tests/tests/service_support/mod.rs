//! Shared by the `service_*` tests: run `qrank serve` against the real RabbitMQ and SeaweedFS,
//! publish jobs, and read results, dead letters and metrics.
//!
//! Servers come from the variables `.ci/lib.sh` exports (`QRANK_TEST_AMQP_URL`,
//! `QRANK_TEST_S3_*`). Without them a test prints why and skips, unless
//! `QRANK_REQUIRE_SERVERS=1`, when it fails. Every test gets its own exchanges, queues and S3
//! prefix; a [`Sandbox`] deletes them when dropped, even after a failed assertion.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use prost::Message;
use protos::v1::{RankJob, RankResult};
use qrank_tests::{server_env, S3Server};

/// The test servers.
#[derive(Debug, Clone)]
pub struct Servers {
    pub amqp_url: String,
    pub s3: S3Server,
}

impl Servers {
    /// The servers from the environment, or `None` (after saying why) when the test should skip.
    pub fn from_env() -> Option<Self> {
        let hint = "start them with `.ci/start-s3.sh` and `.ci/start-rabbitmq.sh`, then `source .ci/lib.sh`";
        let [amqp_url]: [String; 1] = server_env(&["QRANK_TEST_AMQP_URL"], hint)?.try_into().ok()?;
        Some(Self {
            amqp_url,
            s3: S3Server::from_env(hint)?,
        })
    }
}

/// One test's own exchanges, queues and S3 prefix; dropping it deletes them all.
#[derive(Debug)]
pub struct Sandbox {
    pub servers: Servers,
    pub exchange: String,
    pub queue: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// The work queue of shared groups.
    pub groups_queue: String,
    /// S3 key prefix, without a trailing slash.
    pub prefix: String,
}

impl Sandbox {
    pub fn new(servers: &Servers, test: &str) -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
        let id = format!("{test}-{}-{nanos}", std::process::id());
        Self {
            servers: servers.clone(),
            exchange: format!("qrank.test.{id}"),
            queue: format!("qrank.test.{id}.jobs"),
            dead_letter_exchange: format!("qrank.test.{id}.dlx"),
            dead_letter_queue: format!("qrank.test.{id}.dead"),
            groups_queue: format!("qrank.test.{id}.groups"),
            prefix: format!("qrank-tests/{id}"),
        }
    }

    /// `s3://BUCKET/PREFIX/sub/`.
    pub fn url(&self, sub: &str) -> String {
        format!("s3://{}/{}/{sub}/", self.servers.s3.bucket, self.prefix)
    }

    /// Upload `bytes` to `PREFIX/key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) {
        let location = Path::from(format!("{}/{key}", self.prefix));
        self.servers
            .s3
            .store()
            .put(&location, PutPayload::from(bytes))
            .await
            .unwrap_or_else(|e| panic!("uploading {location}: {e}"));
    }

    /// Upload files under `PREFIX/sub/`; return their file names.
    pub async fn upload(&self, sub: &str, files: &[PathBuf]) -> Vec<String> {
        let mut names = Vec::new();
        for file in files {
            let name = file.file_name().expect("a file").to_string_lossy().into_owned();
            let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            self.put(&format!("{sub}/{name}"), bytes).await;
            names.push(name);
        }
        names
    }

    /// The object at `PREFIX/key`, if it exists.
    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let location = Path::from(format!("{}/{key}", self.prefix));
        match self.servers.s3.store().get(&location).await {
            Ok(found) => Some(found.bytes().await.expect("reading an object").to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("reading {location}: {e}"),
        }
    }

    /// Keys under `PREFIX/sub/`, relative to `PREFIX`.
    pub async fn list(&self, sub: &str) -> Vec<String> {
        let location = Path::from(format!("{}/{sub}", self.prefix));
        let mut keys: Vec<String> = self
            .servers
            .s3
            .store()
            .list(Some(&location))
            .map_ok(|meta| meta.location.as_ref()[self.prefix.len() + 1..].to_owned())
            .try_collect()
            .await
            .expect("listing the test prefix");
        keys.sort();
        keys
    }

    /// The environment that points `qrank serve` at this sandbox.
    fn service_env(&self) -> Vec<(String, String)> {
        let s = &self.servers;
        [
            ("QRANK_AMQP__URL", s.amqp_url.as_str()),
            ("QRANK_AMQP__EXCHANGE", &self.exchange),
            ("QRANK_AMQP__QUEUE", &self.queue),
            ("QRANK_AMQP__DEAD_LETTER_EXCHANGE", &self.dead_letter_exchange),
            ("QRANK_AMQP__DEAD_LETTER_QUEUE", &self.dead_letter_queue),
            ("QRANK_AMQP__GROUPS_QUEUE", &self.groups_queue),
            ("AWS_ENDPOINT", &s.s3.endpoint),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
            ("AWS_REGION", &s.s3.region),
            ("AWS_ACCESS_KEY_ID", &s.s3.access_key),
            ("AWS_SECRET_ACCESS_KEY", &s.s3.secret_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let (servers, prefix) = (self.servers.clone(), self.prefix.clone());
        let queues = [
            self.queue.clone(),
            self.dead_letter_queue.clone(),
            self.groups_queue.clone(),
        ];
        let exchanges = [self.exchange.clone(), self.dead_letter_exchange.clone()];
        // A thread of its own: Drop may run inside the test's runtime, which cannot block.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let store = servers.s3.store();
                let objects: Vec<_> = store.list(Some(&Path::from(prefix.as_str()))).try_collect().await?;
                for object in objects {
                    store.delete(&object.location).await?;
                }
                if let Ok(connection) = Connection::connect(&servers.amqp_url, ConnectionProperties::default()).await {
                    if let Ok(channel) = connection.create_channel().await {
                        for queue in queues {
                            let _ = channel
                                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                                .await;
                        }
                        for exchange in exchanges {
                            let _ = channel
                                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                                .await;
                        }
                    }
                    let _ = connection.close(200, "cleanup".into()).await;
                }
                Ok::<_, object_store::Error>(())
            })
        });
        // Never panic in drop: a failed cleanup must not hide the test's own failure.
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("warning: could not clean up {}: {e}", self.prefix);
        }
    }
}

use qrank_tests::qrank_bin;

/// Settings that run the Co-Instruct checkpoint in `model` on the CPU.
pub fn on_model(model: &tempfile::TempDir) -> [(&'static str, &str); 2] {
    [
        ("QRANK_MODEL__NAME", model.path().to_str().expect("a UTF-8 path")),
        ("QRANK_MODEL__DEVICE", "cpu"),
    ]
}

/// A running `qrank serve`, killed when dropped.
pub struct Service {
    child: Child,
    pub http: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Service {
    /// Start `qrank serve` for `sandbox` with extra `QRANK_*` settings, and wait until it is ready.
    pub async fn start(sandbox: &Sandbox, settings: &[(&str, &str)]) -> Self {
        let http = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("qrank.log");
        let mut command = Command::new(qrank_bin());
        command.arg("serve");
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("AWS_") || (name.starts_with("QRANK_") && name.contains("__")) {
                command.env_remove(&*name);
            }
        }
        command
            .envs(sandbox.service_env())
            .env("QRANK_HTTP__LISTEN", http.to_string())
            .env("QRANK_LOG__FILTER", "info")
            .envs(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::options().append(true).open(&log).expect("log file"));
        let child = command.spawn().expect("starting qrank serve");
        let mut service = Self {
            child,
            http,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("qrank serve exited with {status}:\n{}", service.log());
            }
            if matches!(service.get("/readyz").await, Some((200, _))) {
                return service;
            }
            assert!(
                Instant::now() < deadline,
                "qrank serve not ready in 30 s:\n{}",
                service.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the service logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGKILL: the process dies without any chance to ack, nack or close.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Wait for the process to exit, up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// GET `path` on the probe port: status and body.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http, path).await
    }

    /// Wait (up to 60 s) until the model is known broken: `/healthz` fails, and the replica takes
    /// no jobs or shared groups (`qrank_amqp_consuming` is 0).
    pub async fn wait_until_it_takes_no_work(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let healthz = self.get("/healthz").await.map(|(status, _)| status);
            let consuming = self.metrics().await.value("qrank_amqp_consuming");
            if healthz == Some(503) && consuming == 0.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after 60 s: /healthz {healthz:?}, consuming {consuming}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/metrics`, parsed; panics if it is not valid Prometheus text.
    pub async fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").await.expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- qrank serve log ---\n{}", self.log());
        }
    }
}

/// GET `path` from an HTTP server on `address`: status and body, or `None` when it does not
/// answer. HTTP/1.0, so that the body comes whole rather than in chunks.
pub async fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A port on 127.0.0.1 that is free now, for a server the test starts.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address")
}

/// Samples of a Prometheus text exposition: `name{labels}` to value.
#[derive(Debug)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// Parse the text format strictly enough to catch a broken exposition: every sample line is
    /// `series value`, every series was announced by a `# TYPE` line, and names are valid.
    pub fn parse(text: &str) -> Self {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "bad metric type: {line}"
                );
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad sample line: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad sample value: {line}"));
            let name = series.split('{').next().expect("a name");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad metric name: {line}"
            );
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "sample without a TYPE line: {line}");
            samples.insert(series.to_owned(), value);
        }
        Self(samples)
    }

    /// The value of `series` (e.g. `qrank_job_completed_total{outcome="ranked"}`), 0 if absent.
    pub fn value(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }
}

/// A client of the test broker: publishes jobs, receives results, reads dead letters.
pub struct Broker {
    connection: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
    dead_letter_queue: String,
    groups_queue: String,
}

impl Broker {
    /// Connect and declare the sandbox's job exchange (as the service does, so either may
    /// start first).
    pub async fn connect(sandbox: &Sandbox) -> Self {
        let connection = Connection::connect(&sandbox.servers.amqp_url, ConnectionProperties::default())
            .await
            .expect("connecting to the test broker");
        let channel = connection.create_channel().await.expect("a channel");
        // Confirmed publishes: once `publish_*` returns, the broker has the message queued.
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("enabling publisher confirms");
        channel
            .exchange_declare(
                sandbox.exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declaring the exchange");
        Self {
            connection,
            channel,
            exchange: sandbox.exchange.clone(),
            queue: sandbox.queue.clone(),
            dead_letter_queue: sandbox.dead_letter_queue.clone(),
            groups_queue: sandbox.groups_queue.clone(),
        }
    }

    /// Results published with `routing_key`, from now on (an exclusive queue of our own).
    pub async fn results(&self, routing_key: &str) -> Consumer {
        let queue = self
            .channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declaring a result queue");
        self.channel
            .queue_bind(
                queue.name().clone(),
                self.exchange.as_str().into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("binding the result queue");
        self.channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consuming results")
    }

    /// Publish a job as the contract says: type, content-type, persistent, timestamp.
    pub async fn publish_job(&self, job: &RankJob) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
        let properties = BasicProperties::default()
            .with_type("qrank.v1.RankJob".into())
            .with_content_type("application/x-protobuf".into())
            .with_delivery_mode(2)
            .with_timestamp(now);
        self.publish_raw(&job.encode_to_vec(), properties).await;
    }

    /// Publish any body to the job queue.
    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        self.publish(&self.exchange, &self.queue, body, properties).await;
    }

    async fn publish(&self, exchange: &str, routing_key: &str, body: &[u8], properties: BasicProperties) {
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publishing")
            .await
            .expect("the broker confirms the publish");
    }

    /// Publish any body to the shared groups queue (on the default exchange).
    pub async fn publish_group_task(&self, body: &[u8], properties: BasicProperties) {
        self.publish("", &self.groups_queue, body, properties).await;
    }

    /// Take one task from the shared groups queue within `timeout`, as a replica would, unacked:
    /// the caller settles it.
    pub async fn take_group_task(&self, timeout: Duration) -> Option<lapin::message::BasicGetMessage> {
        self.get_within(&self.groups_queue, timeout).await
    }

    /// The first message in `queue` within `timeout`, unacked.
    async fn get_within(&self, queue: &str, timeout: Duration) -> Option<lapin::message::BasicGetMessage> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let got = self
                .channel
                .basic_get(queue.into(), BasicGetOptions::default())
                .await
                .expect("basic.get");
            if got.is_some() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// The next result on `results` within `timeout`, with its properties.
    pub async fn next_result(results: &mut Consumer, timeout: Duration) -> Option<(RankResult, BasicProperties)> {
        let delivery = tokio::time::timeout(timeout, results.next())
            .await
            .ok()??
            .expect("a delivery");
        let result = RankResult::decode(delivery.data.as_slice()).expect("a RankResult");
        Some((result, delivery.properties))
    }

    /// The next result on `results` within `timeout`; without one, the test fails with the logs
    /// of the `services` that should have sent it.
    pub async fn expect_result(
        results: &mut Consumer,
        timeout: Duration,
        services: &[&Service],
    ) -> (RankResult, BasicProperties) {
        match Self::next_result(results, timeout).await {
            Some(result) => result,
            None => {
                let logs: Vec<String> = services.iter().map(|service| service.log()).collect();
                panic!("no result:\n{}", logs.join("\n"))
            }
        }
    }

    /// The next dead letter within `timeout`: its body and headers (as strings).
    pub async fn dead_letter(&self, timeout: Duration) -> Option<(Vec<u8>, BTreeMap<String, String>)> {
        let message = self.get_within(&self.dead_letter_queue, timeout).await?;
        message.delivery.ack(BasicAckOptions::default()).await.expect("ack");
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default()
            .inner()
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    other => format!("{other:?}"),
                };
                (k.to_string(), text)
            })
            .collect();
        Some((message.delivery.data.clone(), headers))
    }

    /// Messages waiting in the job queue (ready, not unacked).
    pub async fn jobs_waiting(&self) -> u32 {
        self.waiting(&self.queue).await
    }

    /// Shared-group tasks waiting in their queue, not taken by any replica.
    pub async fn groups_waiting(&self) -> u32 {
        self.waiting(&self.groups_queue).await
    }

    async fn waiting(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("inspecting the queue {queue}: {e}"))
            .message_count()
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// A job over `sandbox`'s `images/` prefix, writing to `out/`, replying on `reply`.
/// The replicas' metrics once `settled` holds for them, or after 5 s. Counters move a moment
/// after the result arrives here: a replica counts an answer after the broker confirmed it, and
/// a job after its ack.
pub async fn metrics_once(services: &[&Service], settled: impl Fn(&[Metrics]) -> bool) -> Vec<Metrics> {
    let mut metrics = Vec::new();
    for _ in 0..50 {
        metrics = Vec::new();
        for service in services {
            metrics.push(service.metrics().await);
        }
        if settled(&metrics) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    metrics
}

pub fn job(sandbox: &Sandbox, job_id: &str, reply: &str) -> RankJob {
    RankJob {
        job_id: job_id.to_owned(),
        source: sandbox.url("images"),
        output_prefix: sandbox.url("out"),
        reply_routing_key: reply.to_owned(),
        ..RankJob::default()
    }
}
