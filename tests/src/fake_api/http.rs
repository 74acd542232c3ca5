//! The HTTP face of the fake: parses Kubernetes REST paths (`/api/v1/namespaces/NS/pods/NAME`,
//! `/apis/GROUP/VERSION/...`, with `/status` and `/scale`) and query parameters, and dispatches
//! to the store operations. Every request is logged for tests that want to count calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::errors::ApiError;
use super::resources::{self, KINDS};
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Key, Store};
use super::watch::{self, WatchRequest};
use super::writes::{self, PatchType, Scope, Writer};
use super::{scale, RequestRecord};

/// State shared by the handlers and the test handle.
pub struct Shared {
    /// All objects.
    pub store: Mutex<Store>,
    /// Every request served, in order.
    pub log: Mutex<Vec<RequestRecord>>,
    /// Ends open watches when the server stops.
    pub shutdown: CancellationToken,
    /// Writes refused as invalid, as Kubernetes' validation of built-in kinds would.
    pub refusals: Mutex<Vec<Refusal>>,
}

/// Writes of one kind whose body contains `needle` are refused with `422 Invalid`.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// Index of the kind in [`super::KINDS`].
    pub kind: usize,
    /// Text that marks a refused body.
    pub needle: String,
    /// The refusal's message.
    pub message: String,
}

/// Locks a mutex, recovering the data if a holder panicked (the store stays consistent because
/// every operation validates before it writes).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A parsed request path.
struct Route {
    kind: usize,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::unknown_path(path)),
    };
    let (namespace, plural, name, subresource) = match rest {
        [plural] => (None, *plural, None, None),
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::unknown_path(path)),
    };
    let kind =
        resources::find(group, version, plural).ok_or_else(|| ApiError::unknown_path(path))?;
    Ok(Route {
        kind,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

fn writer(query: &HashMap<String, String>, headers: &HeaderMap) -> Writer {
    let agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    let default_manager = agent.split('/').next().unwrap_or("unknown").to_string();
    Writer {
        manager: query
            .get("fieldManager")
            .cloned()
            .unwrap_or(default_manager),
        force: query.get("force").is_some_and(|f| f == "true"),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
}

/// The single handler: every request goes through here.
pub async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&shared.log).push(RequestRecord {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
    });
    match dispatch(&shared, &method, uri.path(), &query, &headers, &body) {
        Ok(Reply::Object(code, value)) => (
            axum::http::StatusCode::from_u16(code).unwrap_or_default(),
            Json(value),
        )
            .into_response(),
        Ok(Reply::Watch(request)) => watch::start(&shared.store, request, shared.shutdown.clone()),
        Err(e) => e.into_response(),
    }
}

enum Reply {
    Object(u16, Value),
    Watch(WatchRequest),
}

fn ok(value: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Object(200, value))
}

fn dispatch(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, ApiError> {
    if query.get("dryRun").is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request(
            "dryRun is not supported by this server".into(),
        ));
    }
    let route = parse_path(path)?;
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        let body_text = String::from_utf8_lossy(body);
        let refused = lock(&shared.refusals)
            .iter()
            .find(|r| r.kind == route.kind && body_text.contains(&r.needle))
            .map(|r| r.message.clone());
        if let Some(message) = refused {
            return Err(ApiError::invalid(message));
        }
    }
    let writer = writer(query, headers);
    let Some(name) = route.name.clone() else {
        return collection(shared, method, route, query, body, &writer);
    };
    let namespace = route
        .namespace
        .clone()
        .ok_or_else(|| ApiError::unknown_path(path))?;
    let key: Key = (route.kind, namespace, name);
    let patch_type = || {
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        PatchType::from_content_type(content_type)
    };
    let mut store = lock(&shared.store);
    let scope = match route.subresource.as_deref() {
        None => Scope::Main,
        Some("status") => Scope::Status,
        Some("scale") => {
            return match *method {
                Method::GET => ok(scale::get(&store, &key)?),
                Method::PUT => ok(scale::write(&mut store, &key, None, body, &writer)?),
                Method::PATCH => ok(scale::write(
                    &mut store,
                    &key,
                    Some((patch_type()?, body)),
                    body,
                    &writer,
                )?),
                _ => Err(ApiError::method_not_allowed(method.as_str())),
            };
        }
        Some(_) => return Err(ApiError::unknown_path(path)),
    };
    match *method {
        Method::GET => ok(store.require(&key)?.clone()),
        Method::PUT => ok(writes::replace(
            &mut store,
            &key,
            parse_json(body)?,
            &writer,
            scope,
        )?),
        Method::PATCH => {
            let existed = store.get(&key).is_some();
            let object = writes::patch(&mut store, &key, patch_type()?, body, &writer, scope)?;
            Ok(Reply::Object(if existed { 200 } else { 201 }, object))
        }
        Method::DELETE if scope == Scope::Main => ok(store.delete(&key)?),
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn collection(
    shared: &Shared,
    method: &Method,
    route: Route,
    query: &HashMap<String, String>,
    body: &[u8],
    writer: &Writer,
) -> Result<Reply, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
    match *method {
        Method::GET if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            Ok(Reply::Watch(WatchRequest::from_query(
                route.kind,
                route.namespace,
                query,
            )?))
        }
        Method::GET => ok(list(&lock(&shared.store), &route, &labels, &fields, query)?),
        Method::POST => {
            let namespace = route
                .namespace
                .ok_or_else(|| ApiError::method_not_allowed("POST"))?;
            let created = writes::create(
                &mut lock(&shared.store),
                route.kind,
                &namespace,
                parse_json(body)?,
                writer,
            )?;
            Ok(Reply::Object(201, created))
        }
        Method::DELETE => {
            let mut store = lock(&shared.store);
            let keys: Vec<Key> = store
                .select(route.kind, route.namespace.as_deref(), &labels)
                .filter(|o| fields.matches(o))
                .filter_map(|o| {
                    let meta = o.get("metadata")?;
                    Some((
                        route.kind,
                        meta.get("namespace")?.as_str()?.to_string(),
                        meta.get("name")?.as_str()?.to_string(),
                    ))
                })
                .collect();
            let items: Vec<Value> = keys.iter().filter_map(|k| store.delete(k).ok()).collect();
            ok(list_body(route.kind, items, store.version(), None))
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn list_body(
    kind: usize,
    items: Vec<Value>,
    version: u64,
    continue_token: Option<String>,
) -> Value {
    let mut metadata = json!({ "resourceVersion": version.to_string() });
    if let Some(token) = continue_token {
        metadata["continue"] = json!(token);
    }
    json!({ "apiVersion": KINDS[kind].api_version(), "kind": format!("{}List", KINDS[kind].kind), "metadata": metadata, "items": items })
}

/// A LIST, paged by `limit`. The continue token carries the offset and the version of the first
/// page, which every page reports, so a watch from it misses nothing that changed meanwhile.
fn list(
    store: &Store,
    route: &Route,
    labels: &LabelSelector,
    fields: &FieldSelector,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let (offset, version) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => token
            .split_once(':')
            .and_then(|(o, v)| Some((o.parse::<usize>().ok()?, v.parse::<u64>().ok()?)))
            .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {token:?}")))?,
        None => (0, store.version()),
    };
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let matching = store
        .select(route.kind, route.namespace.as_deref(), labels)
        .filter(|o| fields.matches(o));
    let items: Vec<Value> = matching
        .skip(offset)
        .take(if limit == 0 { usize::MAX } else { limit + 1 })
        .cloned()
        .collect();
    let (items, token) = if limit > 0 && items.len() > limit {
        let mut items = items;
        items.truncate(limit);
        (items, Some(format!("{}:{version}", offset + limit)))
    } else {
        (items, None)
    };
    Ok(list_body(route.kind, items, version, token))
}
