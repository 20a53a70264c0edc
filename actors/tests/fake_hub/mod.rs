//! A fake of the Hugging Face hub: the three requests `hf-hub` makes to download a model (the
//! repository's file list, then each file's size and etag, then its bytes), answered from a
//! local folder on 127.0.0.1. Weight files (`*.safetensors`, `*.bin`) are redirected to a
//! "CDN" path with the etag in `X-Linked-Etag`, as the hub does for its large (LFS) files. The
//! real hub cannot be reached from the machines the tests run on; with `HF_ENDPOINT` pointing
//! here, the loader's real download path runs end to end.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The commit every file of the fake repository is at.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

pub struct FakeHub {
    address: SocketAddr,
    downloaded: Arc<Mutex<Vec<String>>>,
    listed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Serves the files of `dir` as the model repository `repo_id` at revision `main`.
    pub fn serve(repo_id: &str, dir: &Path) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let address = listener.local_addr().unwrap();
        let downloaded = Arc::new(Mutex::new(Vec::new()));
        let listed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let repo = Repo {
            address,
            id: repo_id.to_owned(),
            dir: dir.to_path_buf(),
            downloaded: downloaded.clone(),
            listed: listed.clone(),
        };
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    repo.answer(stream);
                }
            }
        });
        Self {
            address,
            downloaded,
            listed,
            stop,
            thread: Some(thread),
        }
    }

    /// The value for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The files whose bytes were asked for, in the order asked.
    pub fn downloaded(&self) -> Vec<String> {
        self.downloaded.lock().unwrap().clone()
    }

    /// How often the repository's file list was asked for: once each time the checkpoint is
    /// looked for.
    pub fn listed(&self) -> usize {
        self.listed.load(Ordering::SeqCst)
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Repo {
    address: SocketAddr,
    id: String,
    dir: PathBuf,
    downloaded: Arc<Mutex<Vec<String>>>,
    listed: Arc<AtomicUsize>,
}

impl Repo {
    /// Answers one request, and closes the connection.
    fn answer(&self, stream: TcpStream) {
        let mut reader = BufReader::new(&stream);
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut range = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("range") {
                    range = value.trim().strip_prefix("bytes=").map(str::to_owned);
                }
            }
        }
        let info = format!("/api/models/{}/revision/main", self.id);
        let files = format!("/{}/resolve/main/", self.id);
        let response = if path == info {
            self.listed.fetch_add(1, Ordering::SeqCst);
            self.listing()
        } else if let Some(name) = path.strip_prefix(&files) {
            if is_large(name) {
                Some(self.redirect(name))
            } else {
                self.file(name, range.as_deref())
            }
        } else if let Some(name) = path.strip_prefix(CDN) {
            self.file(name, range.as_deref())
        } else {
            None
        };
        let response = response.unwrap_or_else(|| Response {
            status: "404 Not Found",
            headers: Vec::new(),
            body: b"not found".to_vec(),
        });
        let _ = response.write_to(&stream);
    }

    /// The repository's files, as `/api/models/{id}/revision/{rev}` lists them.
    fn listing(&self) -> Option<Response> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .ok()?
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let siblings: Vec<_> = names
            .iter()
            .map(|name| serde_json::json!({ "rfilename": name }))
            .collect();
        let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings }).to_string();
        Some(Response {
            status: "200 OK",
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into_bytes(),
        })
    }

    /// Where the hub sends a large file: an absolute URL on another path, with the file's etag
    /// and the commit in the redirect's headers, as `hf-hub` reads them there.
    fn redirect(&self, name: &str) -> Response {
        Response {
            status: "302 Found",
            headers: vec![
                ("Location".into(), format!("http://{}{CDN}{name}", self.address)),
                ("X-Linked-Etag".into(), format!("\"{}\"", etag_of(name))),
                ("ETag".into(), "\"lfs-pointer\"".into()),
                ("X-Repo-Commit".into(), COMMIT.into()),
            ],
            body: Vec::new(),
        }
    }

    /// A file's bytes from `range` (`start-` or `start-end`), with the headers `hf-hub` reads:
    /// the commit, the etag that names the cached blob, and the size in `Content-Range`.
    fn file(&self, name: &str, range: Option<&str>) -> Option<Response> {
        if name.contains('/') || name.contains("..") {
            return None;
        }
        let bytes = std::fs::read(self.dir.join(name)).ok()?;
        let (start, end) = match range.and_then(|r| r.split_once('-')) {
            Some((start, end)) => (
                start.parse::<usize>().ok()?,
                if end.is_empty() {
                    bytes.len() - 1
                } else {
                    end.parse::<usize>().ok()?
                },
            ),
            None => (0, bytes.len() - 1),
        };
        if (start, end) != (0, 0) {
            self.downloaded.lock().unwrap().push(name.to_owned());
        }
        Some(Response {
            status: "206 Partial Content",
            headers: vec![
                ("ETag".into(), format!("\"{}\"", etag_of(name))),
                ("X-Repo-Commit".into(), COMMIT.into()),
                ("Content-Range".into(), format!("bytes {start}-{end}/{}", bytes.len())),
            ],
            body: bytes[start..=end].to_vec(),
        })
    }
}

/// Where large files are served from, as the hub's CDN.
const CDN: &str = "/cdn/";

/// Files the hub keeps in LFS and serves through a redirect.
fn is_large(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".bin")
}

/// A file's etag, which names its blob in the cache: here its name in hex.
fn etag_of(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

struct Response {
    status: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn write_to(&self, mut stream: &TcpStream) -> std::io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.write_all(&self.body)?;
        stream.flush()
    }
}
