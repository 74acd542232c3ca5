//! The fake's storage: every object as JSON keyed by kind, namespace and name, a global
//! resource-version counter, and the history and broadcast of changes that watches read.
//! `commit` is the one place an object is written; `delete` also collects its dependents.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::body::Bytes;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::errors::ApiError;
use super::label_index::LabelIndex;
use super::resources;
use super::resources::KINDS;
use super::schema::CrdSchema;
use super::selectors::LabelSelector;

/// How many past changes a watch can resume from; older versions get `410 Expired`.
const HISTORY_LIMIT: usize = 5_000;
/// Slots of the live change channel; a watch that falls further behind is ended and resumes.
const CHANNEL_CAPACITY: usize = 16_384;

/// Index of a kind in [`KINDS`], then namespace and name.
pub type Key = (usize, String, String);

/// A watch event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl Change {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it: serialized once, with just enough of the object kept apart
/// (namespace and labels) to filter watches without parsing it again.
#[derive(Debug)]
pub struct ChangeRecord {
    /// Index of the kind in [`KINDS`].
    pub kind: usize,
    /// The resource version of the change.
    pub version: u64,
    /// `{"metadata": {"namespace": ..., "labels": ...}}` of the object.
    pub selectable: Value,
    /// The `WatchEvent` as one JSON line: the object after the change (before it, for
    /// deletions, with the deleting version).
    pub line: Bytes,
}

impl ChangeRecord {
    /// The object of the change, parsed back from its line.
    pub fn object(&self) -> Option<Value> {
        let mut event: Value = serde_json::from_slice(&self.line).ok()?;
        Some(event.get_mut("object")?.take())
    }
}

/// Changes a watch has missed, and the channel of the changes to come.
pub type Subscription = (
    Vec<Arc<ChangeRecord>>,
    broadcast::Receiver<Arc<ChangeRecord>>,
);

/// All objects and their change history.
pub struct Store {
    objects: BTreeMap<Key, Value>,
    /// `(kind, label key, label value)` to the namespace and name of objects carrying it, so
    /// a LIST by label does not scan every object of the kind.
    by_label: LabelIndex,
    version: u64,
    uids: u64,
    history: VecDeque<Arc<ChangeRecord>>,
    /// The ModelDeployment schema writes are checked against; `None` if it failed to build.
    md_schema: Option<Arc<CrdSchema>>,
    /// Changes recorded per kind, for load reports.
    changes_per_kind: Vec<u64>,
    changes: broadcast::Sender<Arc<ChangeRecord>>,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            by_label: LabelIndex::default(),
            version: 0,
            uids: 0,
            history: VecDeque::new(),
            changes_per_kind: vec![0; KINDS.len()],
            md_schema: match CrdSchema::model_deployments() {
                Ok(schema) => Some(Arc::new(schema)),
                Err(e) => {
                    tracing::warn!(error = %e, "ModelDeployment writes are not validated");
                    None
                }
            },
            changes: broadcast::channel(CHANNEL_CAPACITY).0,
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The resource version of an object as a number, if it has one.
pub fn version_of(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/resourceVersion")?
        .as_str()?
        .parse()
        .ok()
}

/// Equality of two objects apart from the times in `managedFields`.
fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    let strip = |o: &Value| {
        let mut o = o.clone();
        if let Some(entries) = o
            .pointer_mut("/metadata/managedFields")
            .and_then(Value::as_array_mut)
        {
            for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                entry.remove("time");
            }
        }
        o
    };
    strip(a) == strip(b)
}

fn uid_of(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid")?.as_str()
}

impl Store {
    /// The current resource version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A new uid, unique within this server.
    pub fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uids)
    }

    /// The stored object, if any.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// The stored object or `404 NotFound`.
    pub fn require(&self, key: &Key) -> Result<&Value, ApiError> {
        self.objects
            .get(key)
            .ok_or_else(|| ApiError::not_found(KINDS[key.0].plural, &key.2))
    }

    /// Objects of a kind, in one namespace or all, in name order.
    pub fn list<'a>(
        &'a self,
        kind: usize,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let kind_range =
            (kind, String::new(), String::new())..(kind + 1, String::new(), String::new());
        self.objects
            .range(kind_range)
            .filter(move |((_, ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v)
    }

    /// Objects of a kind matching a label selector, using the label index when the selector
    /// has an equality term.
    pub fn select<'a>(
        &'a self,
        kind: usize,
        namespace: Option<&'a str>,
        selector: &'a LabelSelector,
    ) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
        let Some((label, value)) = selector.an_equality() else {
            return Box::new(self.list(kind, namespace).filter(|o| selector.matches(o)));
        };
        let Some(names) = self.by_label.get(kind, label, value) else {
            return Box::new(std::iter::empty());
        };
        Box::new(
            names
                .iter()
                .filter(move |(ns, _)| namespace.is_none_or(|n| n == ns))
                .filter_map(move |(ns, name)| self.objects.get(&(kind, ns.clone(), name.clone())))
                .filter(|o| selector.matches(o)),
        )
    }

    fn put(&mut self, key: &Key, object: Value) {
        self.take(key);
        self.by_label.insert(key, &object);
        self.objects.insert(key.clone(), object);
    }

    fn take(&mut self, key: &Key) -> Option<Value> {
        let object = self.objects.remove(key)?;
        self.by_label.remove(key, &object);
        Some(object)
    }

    /// Subscribes to changes after the current version, with the history since `since`.
    /// `None` when `since` is older than the kept history.
    pub fn subscribe(&self, since: u64) -> Option<Subscription> {
        let oldest_kept = self
            .history
            .front()
            .map_or(self.version, |r| r.version.saturating_sub(1));
        if since < oldest_kept {
            return None;
        }
        let backlog = self
            .history
            .iter()
            .filter(|r| r.version > since)
            .cloned()
            .collect();
        Some((backlog, self.changes.subscribe()))
    }

    /// Refuses an object its kind's schema rejects (ModelDeployments: the CRD schema).
    pub fn validate(&self, key: &Key, object: &Value) -> Result<(), ApiError> {
        match &self.md_schema {
            Some(schema)
                if Some(key.0)
                    == resources::find(
                        kandle_crds::GROUP,
                        kandle_crds::VERSION,
                        "modeldeployments",
                    ) =>
            {
                schema.check(&key.2, object)
            }
            _ => Ok(()),
        }
    }

    /// How many changes (creations, modifications, deletions) each kind has seen.
    pub fn changes_per_kind(&self) -> &[u64] {
        &self.changes_per_kind
    }

    fn record(&mut self, kind: usize, change: Change, object: Value) {
        if let Some(count) = self.changes_per_kind.get_mut(kind) {
            *count += 1;
        }
        let metadata = &object["metadata"];
        let selectable = json!({ "metadata": { "namespace": metadata["namespace"], "labels": metadata["labels"] } });
        let mut line = serde_json::to_vec(&json!({ "type": change.as_str(), "object": object }))
            .unwrap_or_default();
        line.push(b'\n');
        let record = Arc::new(ChangeRecord {
            kind,
            version: self.version,
            selectable,
            line: Bytes::from(line),
        });
        if self.history.len() == HISTORY_LIMIT {
            self.history.pop_front();
        }
        self.history.push_back(Arc::clone(&record));
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(record);
    }

    /// Stores `object` under `key` with a new resource version, keeping the server-owned
    /// metadata of `previous` (uid, creation time) and bumping `generation` when `.spec` changed.
    /// An object being deleted whose last finalizer is gone is removed instead.
    pub fn commit(&mut self, key: &Key, mut object: Value, previous: Option<&Value>) -> Value {
        self.version += 1;
        let kind = &KINDS[key.0];
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind);
        let generation = match previous {
            None => 1,
            Some(old) => {
                let old_generation = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                old_generation + i64::from(old.get("spec") != object.get("spec"))
            }
        };
        let uid = previous
            .and_then(uid_of)
            .map(str::to_string)
            .unwrap_or_else(|| self.next_uid());
        let created = previous
            .and_then(|o| o.pointer("/metadata/creationTimestamp").cloned())
            .unwrap_or_else(|| json!(now()));
        let meta = &mut object["metadata"];
        meta["name"] = json!(key.2);
        meta["namespace"] = json!(key.1);
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = created;
        meta["generation"] = json!(generation);
        meta["resourceVersion"] = json!(self.version.to_string());
        match previous.and_then(|o| o.pointer("/metadata/deletionTimestamp")) {
            Some(ts) => meta["deletionTimestamp"] = ts.clone(),
            None => {
                if let Some(m) = meta.as_object_mut() {
                    m.remove("deletionTimestamp");
                }
            }
        }
        if let Some(old) = previous {
            meta["resourceVersion"] = old
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            // A write that changes nothing keeps the version and wakes no watch, as on a real server.
            if same_ignoring_times(old, &object) {
                self.version -= 1;
                return old.clone();
            }
            object["metadata"]["resourceVersion"] = json!(self.version.to_string());
        }
        let meta = &mut object["metadata"];
        let finalizers_done = meta
            .get("finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty());
        if meta.get("deletionTimestamp").is_some() && finalizers_done {
            self.version -= 1;
            return self.remove_with_dependents(key);
        }
        self.put(key, object.clone());
        let change = if previous.is_some() {
            Change::Modified
        } else {
            Change::Added
        };
        self.record(key.0, change, object.clone());
        object
    }

    /// Deletes the object, or marks it for deletion while it has finalizers. Dependents (objects
    /// whose every owner reference is gone) are deleted with it, transitively.
    pub fn delete(&mut self, key: &Key) -> Result<Value, ApiError> {
        let current = self.require(key)?.clone();
        let has_finalizers = current
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut marked = current;
            self.version += 1;
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["resourceVersion"] = json!(self.version.to_string());
            self.put(key, marked.clone());
            self.record(key.0, Change::Modified, marked.clone());
            return Ok(marked);
        }
        Ok(self.remove_with_dependents(key))
    }

    fn remove_with_dependents(&mut self, key: &Key) -> Value {
        let mut pending = vec![key.clone()];
        let mut first = None;
        while let Some(next) = pending.pop() {
            let Some(mut object) = self.take(&next) else {
                continue;
            };
            self.version += 1;
            object["metadata"]["resourceVersion"] = json!(self.version.to_string());
            self.record(next.0, Change::Deleted, object.clone());
            pending.extend(self.orphans());
            first.get_or_insert(object);
        }
        first.unwrap_or(Value::Null)
    }

    /// Objects with owner references none of which exists any more.
    fn orphans(&self) -> Vec<Key> {
        let live: std::collections::HashSet<&str> =
            self.objects.values().filter_map(uid_of).collect();
        self.objects
            .iter()
            .filter(|(_, o)| {
                o.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        !refs.is_empty()
                            && refs.iter().all(|r| {
                                r.get("uid")
                                    .and_then(Value::as_str)
                                    .is_none_or(|u| !live.contains(u))
                            })
                    })
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_key(name: &str) -> Key {
        (
            resources::find("", "v1", "pods").expect("pods are served"),
            "ns".into(),
            name.into(),
        )
    }

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}, "spec": {}})
    }

    #[test]
    fn label_index_follows_relabelling_and_deletion() {
        let mut store = Store::default();
        let key = pod_key("a");
        let first = store.commit(&key, pod(json!({"app": "x"})), None);
        let selector = |s: &str| LabelSelector::parse(s).expect("selector");
        assert_eq!(store.select(key.0, None, &selector("app=x")).count(), 1);
        store.commit(&key, pod(json!({"app": "y"})), Some(&first));
        assert_eq!(store.select(key.0, None, &selector("app=x")).count(), 0);
        assert_eq!(
            store.select(key.0, Some("ns"), &selector("app=y")).count(),
            1
        );
        assert_eq!(
            store
                .select(key.0, Some("other"), &selector("app=y"))
                .count(),
            0
        );
        store.delete(&key).expect("delete");
        assert_eq!(store.select(key.0, None, &selector("app=y")).count(), 0);
    }

    #[test]
    fn a_watch_from_before_the_kept_history_is_refused() {
        let mut store = Store::default();
        let mut previous: Option<Value> = None;
        for i in 0..=HISTORY_LIMIT + 1 {
            let next = store.commit(
                &pod_key("a"),
                pod(json!({ "n": i.to_string() })),
                previous.as_ref(),
            );
            previous = Some(next);
        }
        assert!(
            store.subscribe(1).is_none(),
            "version 1 fell out of the history"
        );
        let (backlog, _) = store
            .subscribe(store.version() - 1)
            .expect("recent versions resume");
        assert_eq!(backlog.len(), 1);
    }
}
