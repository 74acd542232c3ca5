//! An index from `(kind, label key, label value)` to the objects carrying that label, so a LIST
//! or watch by an equality label selector (how the operator finds its children) does not scan
//! every object of the kind.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::store::Key;

/// Namespace and name of indexed objects, by kind and label.
#[derive(Default)]
pub struct LabelIndex(HashMap<(usize, String, String), BTreeSet<(String, String)>>);

fn entries(key: &Key, object: &Value) -> Vec<(usize, String, String)> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some((key.0, k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl LabelIndex {
    /// Indexes the labels of `object`, stored under `key`.
    pub fn insert(&mut self, key: &Key, object: &Value) {
        for entry in entries(key, object) {
            self.0
                .entry(entry)
                .or_default()
                .insert((key.1.clone(), key.2.clone()));
        }
    }

    /// Forgets the labels of `object`, stored under `key`.
    pub fn remove(&mut self, key: &Key, object: &Value) {
        for entry in entries(key, object) {
            if let Some(names) = self.0.get_mut(&entry) {
                names.remove(&(key.1.clone(), key.2.clone()));
                if names.is_empty() {
                    self.0.remove(&entry);
                }
            }
        }
    }

    /// Namespace and name of the objects of `kind` labelled `label=value`.
    pub fn get(
        &self,
        kind: usize,
        label: &str,
        value: &str,
    ) -> Option<&BTreeSet<(String, String)>> {
        self.0.get(&(kind, label.to_string(), value.to_string()))
    }
}
