//! A local stand-in for the Hugging Face Hub, speaking what `kandle-runtime fetch hf` and
//! other Hub clients use, with faults to inject: bodies cut mid-file and corrupted bytes.
//!
//! ```text
//! GET /api/models/{org}/{name}/revision/{rev}  -> {"sha", "siblings": [{rfilename, size, blobId, lfs}]}
//! GET /api/models/{org}/{name}/tree/{rev}      -> [{type, path, size, oid, lfs}] (one page)
//! GET|HEAD /{org}/{name}/resolve/{rev}/{path}  -> the file (ETag, X-Repo-Commit), or for LFS
//!                                                 a 302 to the CDN (X-Linked-Etag, X-Linked-Size)
//! GET|HEAD {cdn}/lfs-cdn/{sha256}              -> the LFS file, with Range: bytes=N- (206);
//!                                                 the CDN is another origin, as on the Hub
//! ```
//!
//! Refusals carry `X-Error-Code` and a JSON `{"error": ...}` as on the Hub: `RepoNotFound`
//! (401), `RevisionNotFound` (404), `EntryNotFound` (404), `GatedRepo` (401). A repository
//! with several commits is several [`HubRepo`]s with the same id.

mod repo;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request as AxumRequest, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt as _;

pub use repo::{git_blob_sha1, HubFile, HubRepo};

/// One request the server received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Faults {
    /// File path -> (bytes served before the connection drops, GETs still to cut).
    cuts: HashMap<String, (usize, usize)>,
    corrupt: HashSet<String>,
}

struct Shared {
    repos: Vec<HubRepo>,
    url: String,
    /// The file CDN LFS downloads are redirected to: another origin, as on the Hub, so clients
    /// read the file's metadata from the redirect itself and send no token there.
    cdn_url: String,
    faults: Mutex<Faults>,
    log: Mutex<Vec<Request>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running server on 127.0.0.1; dropping it stops accepting connections.
pub struct HubServer {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HubServer {
    /// Serves `repos` on a free port, and their LFS files on another (the CDN).
    pub async fn start(repos: Vec<HubRepo>) -> HubServer {
        let (api, url) = bind().await;
        let (files, cdn_url) = bind().await;
        let shared = Arc::new(Shared {
            repos,
            url,
            cdn_url,
            faults: Mutex::default(),
            log: Mutex::default(),
        });
        let hub = Router::new()
            .route("/api/models/{org}/{name}/revision/{rev}", get(info))
            .route("/api/models/{org}/{name}/tree/{rev}", get(tree))
            .route("/{org}/{name}/resolve/{rev}/{*path}", get(resolve));
        let cdn = Router::new().route("/lfs-cdn/{sha256}", get(cdn));
        let tasks = [(api, hub), (files, cdn)]
            .into_iter()
            .map(|(listener, routes)| {
                let app = routes
                    .layer(middleware::from_fn_with_state(shared.clone(), record))
                    .with_state(shared.clone());
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        eprintln!("hub server stopped: {e}");
                    }
                })
            })
            .collect();
        HubServer { shared, tasks }
    }

    /// `http://127.0.0.1:PORT`, the endpoint to give clients.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The next `times` GETs of the file at `path` (in any repository) drop the connection
    /// after `bytes` bytes of body, as a broken network does: the client sees a short body,
    /// not a clean end.
    pub fn cut_after(&self, path: &str, bytes: usize, times: usize) {
        lock(&self.shared.faults)
            .cuts
            .insert(path.to_string(), (bytes, times));
    }

    /// Serves the file at `path` with one byte flipped from now on (its listed hashes stay).
    pub fn corrupt(&self, path: &str) {
        lock(&self.shared.faults).corrupt.insert(path.to_string());
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn record(State(shared): State<Arc<Shared>>, request: AxumRequest, next: Next) -> Response {
    let entry = {
        let header = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        };
        Request {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            range: header(header::RANGE),
            authorization: header(header::AUTHORIZATION),
        }
    };
    lock(&shared.log).push(entry);
    next.run(request).await
}

/// A refusal as the Hub words it: a status, an `X-Error-Code` and a message.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let headers = [
            ("x-error-code", self.code.to_string()),
            ("x-error-message", self.message.clone()),
        ];
        let body = Json(serde_json::json!({ "error": self.message }));
        (self.status, headers, body).into_response()
    }
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Refusal {
    Refusal {
        status,
        code,
        message: message.to_string(),
    }
}

/// The repository and the commit a request names, or the Hub's refusal. Several entries
/// may share an id (one per commit); the one the revision resolves in answers.
fn find<'s>(
    shared: &'s Shared,
    id: &str,
    revision: &str,
    headers: &HeaderMap,
) -> Result<(&'s HubRepo, &'s str), Refusal> {
    let mut same_id = shared.repos.iter().filter(|repo| repo.id == id);
    let Some(first) = same_id.clone().next() else {
        let message = format!(
            "Repository Not Found for url: {}/api/models/{id}.",
            shared.url
        );
        return Err(refuse(StatusCode::UNAUTHORIZED, "RepoNotFound", &message));
    };
    let resolved = same_id.find_map(|repo| Some((repo, repo.resolve(revision)?)));
    let repo = resolved.map_or(first, |(repo, _)| repo);
    if let Some(token) = &repo.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        if sent != Some(format!("Bearer {token}").as_str()) {
            let message = format!(
                "Access to model {id} is restricted. You must have access to it and be authenticated to access it. Please log in."
            );
            return Err(refuse(StatusCode::UNAUTHORIZED, "GatedRepo", &message));
        }
    }
    resolved.ok_or_else(|| {
        let message = format!("Invalid rev id: {revision}");
        refuse(StatusCode::NOT_FOUND, "RevisionNotFound", &message)
    })
}

async fn info(
    State(shared): State<Arc<Shared>>,
    Path((org, name, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (repo, commit) = match find(&shared, &format!("{org}/{name}"), &rev, &headers) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let siblings: Vec<_> = repo.files.iter().map(HubFile::sibling).collect();
    Json(serde_json::json!({
        "id": repo.id,
        "modelId": repo.id,
        "sha": commit,
        "private": false,
        "gated": repo.token.is_some(),
        "siblings": siblings,
    }))
    .into_response()
}

/// Every file at the revision, in one page (`huggingface_hub`'s `snapshot_download` lists
/// them so).
async fn tree(
    State(shared): State<Arc<Shared>>,
    Path((org, name, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    match find(&shared, &format!("{org}/{name}"), &rev, &headers) {
        Ok((repo, _)) => Json(
            repo.files
                .iter()
                .map(HubFile::tree_entry)
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn resolve(
    State(shared): State<Arc<Shared>>,
    Path((org, name, rev, path)): Path<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let (repo, commit) = match find(&shared, &format!("{org}/{name}"), &rev, &headers) {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(file) = repo.file(&path) else {
        let message = format!("Entry not found: {path} at {rev}");
        return refuse(StatusCode::NOT_FOUND, "EntryNotFound", &message).into_response();
    };
    if file.lfs {
        let sha256 = file.sha256();
        let location = format!("{}/lfs-cdn/{sha256}", shared.cdn_url);
        let headers = [
            (header::LOCATION.as_str(), location),
            ("x-linked-etag", format!("\"{sha256}\"")),
            ("x-linked-size", file.content.len().to_string()),
            ("x-repo-commit", commit.to_string()),
        ];
        return (StatusCode::FOUND, headers).into_response();
    }
    let mut response = serve(&shared, file, &method, &headers);
    let extra = response.headers_mut();
    extra.insert(header::ETAG, quoted(&file.blob_id()));
    extra.insert("x-repo-commit", commit.parse().expect("a hex commit"));
    response
}

async fn cdn(
    State(shared): State<Arc<Shared>>,
    Path(sha256): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let file = shared
        .repos
        .iter()
        .flat_map(|repo| &repo.files)
        .find(|file| file.lfs && file.sha256() == sha256);
    match file {
        Some(file) => {
            let mut response = serve(&shared, file, &method, &headers);
            response.headers_mut().insert(header::ETAG, quoted(&sha256));
            response
        }
        None => (StatusCode::NOT_FOUND, "no such object").into_response(),
    }
}

fn quoted(value: &str) -> header::HeaderValue {
    format!("\"{value}\"").parse().expect("a quoted hex digest")
}

/// A listener on a free loopback port, and its URL.
async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding 127.0.0.1:0");
    let addr = listener.local_addr().expect("a bound address");
    (listener, format!("http://{addr}"))
}

/// The file's bytes from the requested offset, with the faults set for it.
fn serve(shared: &Shared, file: &HubFile, method: &Method, headers: &HeaderMap) -> Response {
    let total = file.content.len();
    let start = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.split('-').next())
        .and_then(|start| start.parse::<usize>().ok());
    if start.is_some_and(|start| start >= total) {
        let range = [(header::CONTENT_RANGE, format!("bytes */{total}"))];
        return (StatusCode::RANGE_NOT_SATISFIABLE, range).into_response();
    }
    let mut faults = lock(&shared.faults);
    let mut content = file.content.clone();
    if faults.corrupt.contains(&file.path) && !content.is_empty() {
        let middle = content.len() / 2;
        content[middle] ^= 0xff;
    }
    let from = start.unwrap_or(0);
    let body = Bytes::from(content).slice(from..);
    let length = body.len();
    let mut cut = None;
    if method == Method::GET {
        if let Some((bytes, times)) = faults.cuts.get_mut(&file.path).filter(|(_, t)| *t > 0) {
            *times -= 1;
            cut = Some(*bytes);
        }
    }
    drop(faults);
    let body = match cut {
        Some(bytes) => cut_body(body, bytes),
        None => Body::from(body),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, length.into());
    headers.insert(
        header::ACCEPT_RANGES,
        "bytes".parse().expect("a header value"),
    );
    if let Some(start) = start {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let range = format!("bytes {start}-{}/{total}", total - 1);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            range.parse().expect("a header value"),
        );
    }
    response
}

/// A body that sends `bytes` bytes of `content` in chunks, then fails, which makes the
/// server drop the connection short of the announced length.
fn cut_body(content: Bytes, bytes: usize) -> Body {
    const CHUNK: usize = 64 * 1024;
    let sent = content.slice(..bytes.min(content.len()));
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..sent.len())
        .step_by(CHUNK)
        .map(|at| Ok(sent.slice(at..(at + CHUNK).min(sent.len()))))
        .collect();
    let broken = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut by the test");
    Body::from_stream(futures::stream::iter(chunks).chain(futures::stream::iter([Err(broken)])))
}
