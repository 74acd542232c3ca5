//! Create, replace and patch, with the API server's rules: names and namespaces from the path,
//! optimistic concurrency on `resourceVersion`, `.status` written only through the status
//! subresource, every patch type including server-side apply, and field ownership recorded.

use serde_json::{json, Value};

use super::errors::ApiError;
use super::managed::Managers;
use super::resources::KINDS;
use super::store::{version_of, Key, Store};

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The object itself (not `.status`, for kinds with a status subresource).
    Main,
    /// Only `.status`.
    Status,
}

impl Scope {
    fn subresource(self) -> &'static str {
        match self {
            Scope::Main => "",
            Scope::Status => "status",
        }
    }
}

/// The patch types of `PATCH` requests, by content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`, and strategic merge patches read the same way.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
}

impl PatchType {
    /// The patch type named by a `Content-Type` header.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                Ok(Self::Merge)
            }
            "application/json-patch+json" => Ok(Self::Json),
            "application/apply-patch+yaml" => Ok(Self::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Who writes, and how.
#[derive(Clone, Debug)]
pub struct Writer {
    /// The field manager.
    pub manager: String,
    /// `force` of server-side apply.
    pub force: bool,
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn check_identity(key: &Key, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object".into(),
        ));
    }
    let kind = &KINDS[key.0];
    if let Some(k) = body.get("kind").and_then(Value::as_str) {
        if k != kind.kind {
            return Err(ApiError::bad_request(format!(
                "kind {k:?} does not match the path's {:?}",
                kind.kind
            )));
        }
    }
    if let Some(ns) = body.pointer("/metadata/namespace").and_then(Value::as_str) {
        if ns != key.1 {
            return Err(ApiError::bad_request(format!("the namespace of the object ({ns}) does not match the namespace on the request ({})", key.1)));
        }
    }
    if !is_dns_subdomain(&key.2) {
        return Err(ApiError::invalid(format!(
            "{} \"{}\" is invalid: metadata.name: Invalid value: {:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
            kind.kind, key.2, key.2
        )));
    }
    Ok(())
}

/// Keeps only what `scope` may change: the main resource keeps the stored status, the status
/// subresource keeps everything but the status.
fn confine(kind: usize, scope: Scope, old: &Value, mut new: Value) -> Value {
    match scope {
        Scope::Main if KINDS[kind].status_subresource => {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            new
        }
        Scope::Main => new,
        Scope::Status => {
            let mut kept = old.clone();
            match new.get("status") {
                Some(status) => kept["status"] = status.clone(),
                None => {
                    if let Some(m) = kept.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            kept
        }
    }
}

fn without_managed_fields(mut body: Value) -> Value {
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    body
}

/// `POST`: creates the object named by the body (or its `generateName`).
pub fn create(
    store: &mut Store,
    kind: usize,
    namespace: &str,
    body: Value,
    writer: &Writer,
) -> Result<Value, ApiError> {
    let mut body = without_managed_fields(body);
    let name = match body.pointer("/metadata/name").and_then(Value::as_str) {
        Some(name) => name.to_string(),
        None => match body
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
        {
            Some(prefix) => format!("{prefix}{}", &store.next_uid()[24..]),
            None => {
                return Err(ApiError::invalid(format!(
                    "{}: metadata.name: Required value: name or generateName is required",
                    KINDS[kind].kind
                )))
            }
        },
    };
    let key: Key = (kind, namespace.to_string(), name);
    check_identity(&key, &body)?;
    if store.get(&key).is_some() {
        return Err(ApiError::already_exists(KINDS[kind].plural, &key.2));
    }
    if KINDS[kind].status_subresource {
        if let Some(m) = body.as_object_mut() {
            m.remove("status");
        }
    }
    body["metadata"]["name"] = json!(key.2);
    let mut managers = Managers::default();
    managers.record_update(
        &json!({}),
        &body,
        &writer.manager,
        "",
        &KINDS[kind].api_version(),
    );
    managers.write_to(&mut body);
    commit_checked(store, &key, body, None)
}

/// `PUT`: replaces the object (or its status), refusing a stale `resourceVersion`.
pub fn replace(
    store: &mut Store,
    key: &Key,
    body: Value,
    writer: &Writer,
    scope: Scope,
) -> Result<Value, ApiError> {
    check_identity(key, &body)?;
    if let Some(name) = body.pointer("/metadata/name").and_then(Value::as_str) {
        if name != key.2 {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                key.2
            )));
        }
    }
    let current = store.require(key)?.clone();
    check_precondition(key, &body, &current)?;
    let new = confine(key.0, scope, &current, without_managed_fields(body));
    finish_update(store, key, &current, new, writer, scope)
}

/// A resourceVersion in the sent object is a precondition: it must be the stored one.
fn check_precondition(key: &Key, sent: &Value, current: &Value) -> Result<(), ApiError> {
    let version = |v: &Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match version(sent) {
        Some(sent) if Some(&sent) != version(current).as_ref() => Err(stale(key)),
        _ => Ok(()),
    }
}

fn stale(key: &Key) -> ApiError {
    ApiError::conflict(format!(
        "Operation cannot be fulfilled on {} \"{}\": the object has been modified; please apply your changes to the latest version and try again",
        KINDS[key.0].plural, key.2
    ))
}

fn finish_update(
    store: &mut Store,
    key: &Key,
    current: &Value,
    mut new: Value,
    writer: &Writer,
    scope: Scope,
) -> Result<Value, ApiError> {
    let mut managers = Managers::from_object(current);
    managers.record_update(
        current,
        &new,
        &writer.manager,
        scope.subresource(),
        &KINDS[key.0].api_version(),
    );
    managers.write_to(&mut new);
    commit_checked(store, key, new, Some(current))
}

/// Parses a patch body; apply configurations may be YAML.
fn parse_body(patch_type: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let parsed = serde_json::from_slice(body);
    match (parsed, patch_type) {
        (Ok(v), _) => Ok(v),
        (Err(_), PatchType::Apply) => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
        (Err(e), _) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// `PATCH`: merge, JSON or apply patch of the object or its status.
pub fn patch(
    store: &mut Store,
    key: &Key,
    patch_type: PatchType,
    body: &[u8],
    writer: &Writer,
    scope: Scope,
) -> Result<Value, ApiError> {
    let patch = parse_body(patch_type, body)?;
    if patch_type == PatchType::Apply {
        return apply(store, key, patch, writer, scope);
    }
    let current = store.require(key)?.clone();
    let mut patched = current.clone();
    match patch_type {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("error decoding JSON patch: {e}")))?;
            json_patch::patch(&mut patched, &ops)
                .map_err(|e| ApiError::invalid(format!("the JSON patch cannot be applied: {e}")))?;
        }
        _ => json_patch::merge(&mut patched, &patch),
    }
    check_precondition(key, &patch, &current)?;
    check_identity(key, &patched)?;
    let new = confine(key.0, scope, &current, without_managed_fields(patched));
    finish_update(store, key, &current, new, writer, scope)
}

fn apply(
    store: &mut Store,
    key: &Key,
    config: Value,
    writer: &Writer,
    scope: Scope,
) -> Result<Value, ApiError> {
    check_identity(key, &config)?;
    let kind = &KINDS[key.0];
    if config.get("apiVersion").and_then(Value::as_str) != Some(kind.api_version().as_str())
        || config.get("kind").is_none()
    {
        return Err(ApiError::bad_request(format!(
            "an apply configuration must name apiVersion {:?} and kind {:?}",
            kind.api_version(),
            kind.kind
        )));
    }
    let mut config = without_managed_fields(config);
    // A resourceVersion in the configuration makes the apply conditional, on either scope.
    let precondition = config
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    match scope {
        Scope::Main if kind.status_subresource => {
            if let Some(m) = config.as_object_mut() {
                m.remove("status");
            }
        }
        Scope::Main => {}
        Scope::Status => {
            config = json!({"status": config.get("status").cloned().unwrap_or(json!({}))})
        }
    }
    let Some(current) = store.get(key).cloned() else {
        if scope == Scope::Status {
            return Err(ApiError::not_found(kind.plural, &key.2));
        }
        let mut managers = Managers::default();
        let mut created = managers.apply(
            &json!({}),
            &config,
            &writer.manager,
            true,
            "",
            &kind.api_version(),
        )?;
        created["metadata"]["name"] = json!(key.2);
        managers.write_to(&mut created);
        return commit_checked(store, key, created, None);
    };
    if let Some(sent) = precondition {
        if version_of(&current).map(|v| v.to_string()) != Some(sent) {
            return Err(stale(key));
        }
    }
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let mut managers = Managers::from_object(&current);
    let merged = managers.apply(
        &current,
        &config,
        &writer.manager,
        writer.force,
        scope.subresource(),
        &kind.api_version(),
    )?;
    let mut new = confine(key.0, scope, &current, merged);
    managers.write_to(&mut new);
    commit_checked(store, key, new, Some(&current))
}

/// Validates the object as the API server would before storing it, then stores it.
fn commit_checked(
    store: &mut Store,
    key: &Key,
    object: Value,
    previous: Option<&Value>,
) -> Result<Value, ApiError> {
    store.validate(key, &object)?;
    Ok(store.commit(key, object, previous))
}
