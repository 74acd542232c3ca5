//! Field ownership, kept in `metadata.managedFields` as a real API server keeps it: which manager
//! set which fields, by `Apply` or by `Update`. Server-side apply merges a configuration, refuses
//! to take fields another manager set to a different value unless forced, and removes the fields
//! its manager applied before but omits now.

use serde_json::{json, Value};

use super::errors::ApiError;
use super::fields::{self, FieldSet, Path};

/// How a manager last wrote its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or a non-apply patch.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
struct Entry {
    manager: String,
    operation: Operation,
    subresource: String,
    api_version: String,
    time: String,
    fields: FieldSet,
}

/// The `managedFields` of one object.
#[derive(Clone, Debug, Default)]
pub struct Managers(Vec<Entry>);

fn owns_at_or_below(set: &FieldSet, path: &Path) -> bool {
    set.range(path.clone()..)
        .take_while(|p| p.starts_with(path))
        .next()
        .is_some()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Managers {
    /// Reads `metadata.managedFields`; entries in another format are dropped.
    pub fn from_object(object: &Value) -> Self {
        let entries = object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|e| {
                        Some(Entry {
                            manager: e.get("manager")?.as_str()?.to_string(),
                            operation: match e.get("operation")?.as_str()? {
                                "Apply" => Operation::Apply,
                                _ => Operation::Update,
                            },
                            subresource: e
                                .get("subresource")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            api_version: e
                                .get("apiVersion")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            time: e
                                .get("time")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            fields: fields::from_fields_v1(e.get("fieldsV1")?),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self(entries)
    }

    /// Writes the entries into `metadata.managedFields`.
    pub fn write_to(&self, object: &mut Value) {
        let list: Vec<Value> = self
            .0
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut entry = json!({
                    "manager": e.manager,
                    "operation": e.operation.as_str(),
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields::to_fields_v1(&e.fields),
                });
                if !e.subresource.is_empty() {
                    entry["subresource"] = json!(e.subresource);
                }
                entry
            })
            .collect();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }

    fn entry_mut(
        &mut self,
        manager: &str,
        operation: Operation,
        subresource: &str,
        api_version: &str,
    ) -> &mut Entry {
        let position = self.0.iter().position(|e| {
            e.manager == manager && e.operation == operation && e.subresource == subresource
        });
        let index = position.unwrap_or_else(|| {
            self.0.push(Entry {
                manager: manager.to_string(),
                operation,
                subresource: subresource.to_string(),
                api_version: api_version.to_string(),
                time: String::new(),
                fields: FieldSet::new(),
            });
            self.0.len() - 1
        });
        let entry = &mut self.0[index];
        entry.time = now();
        entry.api_version = api_version.to_string();
        entry
    }

    /// Records a non-apply write from `old` to `new`: `manager` takes the fields it changed or
    /// added, and fields that disappeared are nobody's any more.
    pub fn record_update(
        &mut self,
        old: &Value,
        new: &Value,
        manager: &str,
        subresource: &str,
        api_version: &str,
    ) {
        let new_set = fields::field_set(new);
        let changed: FieldSet = new_set
            .iter()
            .filter(|p| match (fields::lookup(old, p), fields::lookup(new, p)) {
                (None, _) => true,
                (Some(_), _) if matches!(p.last(), Some(fields::Element::Key(_))) => false,
                (before, after) => before != after,
            })
            .cloned()
            .collect();
        for entry in &mut self.0 {
            entry.fields.retain(|p| {
                new_set.contains(p) && (entry.manager == manager || !changed.contains(p))
            });
        }
        if !changed.is_empty() {
            self.entry_mut(manager, Operation::Update, subresource, api_version)
                .fields
                .extend(changed);
        }
        self.0.retain(|e| !e.fields.is_empty());
    }

    /// Server-side apply of `applied` (already limited to the written scope) onto `current` by
    /// `manager`. Returns the merged object; the entries are updated in place.
    pub fn apply(
        &mut self,
        current: &Value,
        applied: &Value,
        manager: &str,
        force: bool,
        subresource: &str,
        api_version: &str,
    ) -> Result<Value, ApiError> {
        let applied_set = fields::field_set(applied);
        let mut conflicts = Vec::new();
        for entry in self.0.iter_mut().filter(|e| e.manager != manager) {
            let clashing: Vec<Path> = entry
                .fields
                .intersection(&applied_set)
                .filter(|p| !matches!(p.last(), Some(fields::Element::Key(_))))
                .filter(|p| fields::lookup(current, p) != fields::lookup(applied, p))
                .cloned()
                .collect();
            if force {
                entry.fields.retain(|p| !clashing.contains(p));
            } else {
                conflicts.extend(
                    clashing
                        .iter()
                        .map(|p| (entry.manager.clone(), entry.api_version.clone(), p.clone())),
                );
            }
        }
        if !conflicts.is_empty() {
            let described: Vec<String> = conflicts
                .iter()
                .map(|(m, v, p)| format!("conflict with \"{m}\" using {v}: {}", fields::display(p)))
                .collect();
            return Err(ApiError::conflict(format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                described.join("; ")
            )));
        }

        let mut merged = current.clone();
        fields::merge_applied(&mut merged, applied, "");
        let entry = self.entry_mut(manager, Operation::Apply, subresource, api_version);
        let previous = std::mem::replace(&mut entry.fields, applied_set.clone());
        let mut dropped: Vec<&Path> = previous.difference(&applied_set).collect();
        // Deepest first, so a list item goes after its own fields were considered.
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for path in dropped {
            let kept_by_others = self
                .0
                .iter()
                .any(|e| e.manager != manager && owns_at_or_below(&e.fields, path));
            if !kept_by_others && !owns_at_or_below(&applied_set, path) {
                fields::remove(&mut merged, path);
            }
        }
        self.0.retain(|e| !e.fields.is_empty());
        Ok(merged)
    }
}
