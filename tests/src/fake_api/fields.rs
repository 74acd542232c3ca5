//! Field paths of objects, as server-side apply sees them: leaves and list-map items, with the
//! well-known list-map keys (containers by name, conditions by type, ...), plus the `FieldsV1`
//! encoding used in `metadata.managedFields`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    /// A map key.
    Field(String),
    /// An item of a list-map, named by the JSON object of its key fields.
    Key(String),
}

/// A path from the object root to a leaf or a list-map item.
pub type Path = Vec<Element>;
/// The fields a manager owns.
pub type FieldSet = BTreeSet<Path>;

/// Fields the server maintains or that identify the object; nobody owns them.
const UNOWNED: &[&[&str]] = &[
    &["apiVersion"],
    &["kind"],
    &["metadata", "name"],
    &["metadata", "namespace"],
    &["metadata", "uid"],
    &["metadata", "resourceVersion"],
    &["metadata", "generation"],
    &["metadata", "creationTimestamp"],
    &["metadata", "deletionTimestamp"],
    &["metadata", "managedFields"],
    &["metadata", "selfLink"],
];

/// The key fields of a list that merges by key, for the list-maps of the Kubernetes API that
/// kandle's children use. Other lists are atomic: replaced whole.
fn list_keys(field: &str, items: &[Value]) -> Option<&'static [&'static str]> {
    let keys: &'static [&'static str] = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => &["name"],
        "volumeMounts" => &["mountPath"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "ports" if items.iter().all(|i| i.get("containerPort").is_some()) => &["containerPort"],
        "ports" => &["port"],
        _ => return None,
    };
    let keyed = !items.is_empty()
        && items
            .iter()
            .all(|i| keys.iter().all(|k| i.get(*k).is_some_and(|v| !v.is_null())));
    keyed.then_some(keys)
}

fn key_of(item: &Value, keys: &[&str]) -> String {
    let map: Map<String, Value> = keys
        .iter()
        .filter_map(|k| item.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .collect();
    Value::Object(map).to_string()
}

fn key_fields(key: &str) -> Option<Map<String, Value>> {
    serde_json::from_str(key).ok()
}

fn item_has(item: &Value, fields: &Map<String, Value>) -> bool {
    fields.iter().all(|(k, v)| item.get(k) == Some(v))
}

fn item_matches(item: &Value, key: &str) -> bool {
    key_fields(key).is_some_and(|fields| item_has(item, &fields))
}

fn is_unowned(path: &Path) -> bool {
    UNOWNED.iter().any(|prefix| {
        prefix.len() <= path.len()
            && prefix
                .iter()
                .zip(path)
                .all(|(p, e)| matches!(e, Element::Field(f) if f == p))
    })
}

/// Every owned path of `object`: its leaves and its list-map items.
pub fn field_set(object: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    walk(object, &mut Vec::new(), &mut out);
    out.retain(|p| !p.is_empty() && !is_unowned(p));
    out
}

fn walk(value: &Value, prefix: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (name, child) in map {
                prefix.push(Element::Field(name.clone()));
                walk_field(name, child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn walk_field(name: &str, value: &Value, prefix: &mut Path, out: &mut FieldSet) {
    if let Value::Array(items) = value {
        if let Some(keys) = list_keys(name, items) {
            for item in items {
                prefix.push(Element::Key(key_of(item, keys)));
                out.insert(prefix.clone());
                walk(item, prefix, out);
                prefix.pop();
            }
            return;
        }
    }
    walk(value, prefix, out);
}

/// The value at `path`, if present.
pub fn lookup<'a>(object: &'a Value, path: &[Element]) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, element| match element {
        Element::Field(name) => node.get(name),
        Element::Key(key) => {
            let fields = key_fields(key)?;
            node.as_array()?.iter().find(|i| item_has(i, &fields))
        }
    })
}

/// Removes the field or list item at `path`; absent paths are left alone.
pub fn remove(object: &mut Value, path: &[Element]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let parent = parent_path
        .iter()
        .try_fold(object, |node, element| match element {
            Element::Field(name) => node.get_mut(name),
            Element::Key(key) => {
                let fields = key_fields(key)?;
                node.as_array_mut()?
                    .iter_mut()
                    .find(|i| item_has(i, &fields))
            }
        });
    match (parent, last) {
        (Some(Value::Object(map)), Element::Field(name)) => {
            map.remove(name);
        }
        (Some(Value::Array(items)), Element::Key(key)) => items.retain(|i| !item_matches(i, key)),
        _ => {}
    }
}

/// Merges an applied configuration into `base`: maps merge recursively, list-maps merge item by
/// key, everything else is replaced. A `null` in the configuration removes the field.
pub fn merge_applied(base: &mut Value, applied: &Value, field: &str) {
    match (base, applied) {
        (Value::Object(base), Value::Object(applied)) => {
            for (name, value) in applied {
                if value.is_null() {
                    base.remove(name);
                } else if let Some(existing) = base.get_mut(name) {
                    merge_applied(existing, value, name);
                } else {
                    base.insert(name.clone(), value.clone());
                }
            }
        }
        (Value::Array(base_items), Value::Array(applied_items)) => {
            let keys =
                list_keys(field, applied_items).filter(|_| list_keys(field, base_items).is_some());
            let Some(keys) = keys else {
                *base_items = applied_items.clone();
                return;
            };
            for item in applied_items {
                let key = key_of(item, keys);
                match base_items.iter_mut().find(|b| item_matches(b, &key)) {
                    Some(existing) => merge_applied(existing, item, ""),
                    None => base_items.push(item.clone()),
                }
            }
        }
        (base, applied) => *base = applied.clone(),
    }
}

/// `path` written as `.spec.template.spec.containers[name="runtime"].image`.
pub fn display(path: &[Element]) -> String {
    path.iter()
        .map(|e| match e {
            Element::Field(name) => format!(".{name}"),
            Element::Key(key) => {
                let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
                let inner: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", inner.join(","))
            }
        })
        .collect()
}

/// Encodes a field set as `FieldsV1` (`{"f:spec":{"f:replicas":{}}}`).
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        insert_path(&mut root, path);
    }
    Value::Object(root)
}

fn insert_path(node: &mut Map<String, Value>, path: &[Element]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let name = match first {
        Element::Field(f) => format!("f:{f}"),
        Element::Key(k) => format!("k:{k}"),
    };
    let child = node
        .entry(name)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(child) = child {
        if rest.is_empty() && matches!(first, Element::Key(_)) {
            child.insert(".".into(), Value::Object(Map::new()));
        }
        insert_path(child, rest);
    }
}

/// Decodes `FieldsV1` into a field set; unknown element kinds are skipped.
pub fn from_fields_v1(value: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    decode(value, &mut Vec::new(), &mut out);
    out
}

fn decode(value: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(map) = value.as_object() else { return };
    if map.is_empty() && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
    for (name, child) in map {
        let element = if name == "." {
            out.insert(prefix.clone());
            continue;
        } else if let Some(f) = name.strip_prefix("f:") {
            Element::Field(f.to_string())
        } else if let Some(k) = name.strip_prefix("k:") {
            Element::Key(k.to_string())
        } else {
            continue;
        };
        prefix.push(element);
        decode(child, prefix, out);
        prefix.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
               "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "runtime", "image": "x:1", "args": ["--port", "8080"]}]}}}})
    }

    #[test]
    fn field_set_owns_leaves_and_list_items_but_not_identity() {
        let set = field_set(&deployment());
        let shown: Vec<String> = set.iter().map(|p| display(p)).collect();
        assert!(shown.contains(&".spec.replicas".to_string()));
        assert!(shown.contains(&".spec.template.spec.containers[name=\"runtime\"]".to_string()));
        assert!(
            shown.contains(&".spec.template.spec.containers[name=\"runtime\"].args".to_string())
        );
        assert!(!shown
            .iter()
            .any(|p| p.starts_with(".metadata.name") || p == ".kind"));
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = field_set(&deployment());
        let encoded = to_fields_v1(&set);
        assert_eq!(encoded["f:spec"]["f:replicas"], json!({}));
        assert_eq!(from_fields_v1(&encoded), set);
    }

    #[test]
    fn lookup_and_remove_follow_list_map_keys() {
        let mut obj = deployment();
        let path = field_set(&obj)
            .into_iter()
            .find(|p| display(p).ends_with("[name=\"runtime\"].image"))
            .expect("image path");
        assert_eq!(lookup(&obj, &path), Some(&json!("x:1")));
        remove(&mut obj, &path);
        assert_eq!(lookup(&obj, &path), None);
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["name"],
            "runtime"
        );
    }

    #[test]
    fn merge_applied_merges_containers_by_name_and_replaces_atomic_lists() {
        let mut base = deployment();
        let applied = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "runtime", "args": ["--port", "9090"]}, {"name": "sidecar", "image": "s:1"}]}}}});
        merge_applied(&mut base, &applied, "");
        let containers = &base["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "x:1");
        assert_eq!(containers[0]["args"], json!(["--port", "9090"]));
        assert_eq!(containers[1]["name"], "sidecar");
    }
}
