//! `?watch=true`: a stream of newline-delimited `WatchEvent`s for changes after a resource
//! version, optionally preceded by the current objects as `ADDED` (list-then-watch from "now",
//! or a streaming list ending in the `k8s.io/initial-events-end` bookmark).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::errors::ApiError;
use super::resources::KINDS;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{ChangeRecord, Store};

/// What a watch request asked for.
pub struct WatchRequest {
    /// Index of the kind in [`KINDS`].
    pub kind: usize,
    /// One namespace, or all.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion`; unset or "0" starts from the current state, sent as `ADDED`.
    pub since: Option<u64>,
    /// `sendInitialEvents=true`: send the current state and a closing bookmark.
    pub send_initial: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`: the stream ends after this long.
    pub timeout: Duration,
}

/// Longest watch when the client gives no `timeoutSeconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

impl WatchRequest {
    /// Reads a watch request from the query parameters.
    pub fn from_query(
        kind: usize,
        namespace: Option<String>,
        query: &HashMap<String, String>,
    ) -> Result<Self, ApiError> {
        let since = match query.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
            ),
        };
        let timeout = match query.get("timeoutSeconds") {
            Some(t) => Duration::from_secs(
                t.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
            ),
            None => DEFAULT_TIMEOUT,
        };
        Ok(Self {
            kind,
            namespace,
            labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?,
            fields: FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?,
            since,
            send_initial: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
            bookmarks: query
                .get("allowWatchBookmarks")
                .is_some_and(|v| v == "true"),
            timeout,
        })
    }

    fn selects(&self, kind: usize, object: &Value) -> bool {
        kind == self.kind
            && self.namespace.as_deref().is_none_or(|ns| {
                object
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns)
            })
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    fn selects_change(&self, record: &ChangeRecord) -> bool {
        let namespace_and_labels = record.kind == self.kind
            && self.namespace.as_deref().is_none_or(|ns| {
                record
                    .selectable
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns)
            })
            && self.labels.matches(&record.selectable);
        namespace_and_labels
            && (self.fields.is_empty() || record.object().is_some_and(|o| self.fields.matches(&o)))
    }

    fn bookmark(&self, version: u64, initial_end: bool) -> Value {
        let kind = &KINDS[self.kind];
        let mut metadata = json!({ "resourceVersion": version.to_string() });
        if initial_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        json!({ "type": "BOOKMARK", "object": { "apiVersion": kind.api_version(), "kind": kind.kind, "metadata": metadata } })
    }
}

fn line(event: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(event).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Starts the watch: the snapshot and subscription are taken under the store lock, so no change
/// falls between them; a task then streams events until timeout, shutdown or disconnect.
pub fn start(
    store: &std::sync::Mutex<Store>,
    request: WatchRequest,
    shutdown: CancellationToken,
) -> Response {
    let (first, subscription) = {
        let store = match store.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut first = Vec::new();
        let since = match request.since {
            Some(v) if !request.send_initial => v,
            _ => {
                let ns = request.namespace.as_deref();
                first.extend(
                    store
                        .list(request.kind, ns)
                        .filter(|o| request.selects(request.kind, o))
                        .map(|o| line(&json!({ "type": "ADDED", "object": o }))),
                );
                if request.send_initial {
                    first.push(line(&request.bookmark(store.version(), true)));
                }
                store.version()
            }
        };
        match store.subscribe(since) {
            Some((backlog, rx)) => {
                first.extend(
                    backlog
                        .iter()
                        .filter(|r| request.selects_change(r))
                        .map(|r| r.line.clone()),
                );
                (
                    first,
                    Some((rx, backlog.last().map_or(since, |r| r.version))),
                )
            }
            None => {
                let gone = ApiError::expired(since);
                (
                    vec![line(
                        &json!({ "type": "ERROR", "object": gone.status_body() }),
                    )],
                    None,
                )
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(async move {
        for bytes in first {
            if tx.send(Ok(bytes)).await.is_err() {
                return;
            }
        }
        if let Some((changes, last_sent)) = subscription {
            stream_changes(&request, changes, last_sent, &tx, shutdown).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

async fn stream_changes(
    request: &WatchRequest,
    mut changes: broadcast::Receiver<Arc<ChangeRecord>>,
    mut last_sent: u64,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
    shutdown: CancellationToken,
) {
    let deadline = tokio::time::sleep(request.timeout);
    tokio::pin!(deadline);
    loop {
        let record = tokio::select! {
            _ = &mut deadline => break,
            _ = shutdown.cancelled() => return,
            received = changes.recv() => match received {
                Ok(record) => record,
                // Fell behind: end the stream; the client resumes from its last version.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if record.version <= last_sent {
            continue;
        }
        last_sent = record.version;
        if request.selects_change(&record) && tx.send(Ok(record.line.clone())).await.is_err() {
            return;
        }
    }
    if request.bookmarks {
        let _ = tx.send(Ok(line(&request.bookmark(last_sent, false)))).await;
    }
}
