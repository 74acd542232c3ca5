//! The rules the API server applies to a CRD's `openAPIV3Schema` before it accepts it
//! ("structural schemas", list-map keys, defaulting, CEL rules), as a walker that lists every
//! breach with the schema path where it occurs.

use serde_json::{Map, Value};

use super::json_schema::{self, UnknownFields};

/// Keywords a CRD schema may use; `$ref`, `definitions`, `patternProperties`, `uniqueItems`,
/// `additionalItems` and the like are refused by the API server.
#[rustfmt::skip]
const ALLOWED_KEYWORDS: &[&str] = &[
    "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "multipleOf",
    "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not",
    "properties", "additionalProperties", "nullable", "example", "externalDocs",
];

/// The Kubernetes extensions the API server knows.
#[rustfmt::skip]
const KUBERNETES_EXTENSIONS: &[&str] = &[
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-validations",
];

const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];

/// Every way `root` (an `openAPIV3Schema`) breaks the API server's rules, as `path: problem`.
pub fn problems(root: &Value) -> Vec<String> {
    let mut found = Vec::new();
    if root.get("type") != Some(&Value::String("object".into())) {
        found.push("<root>: the root must be of type object".to_string());
    }
    if root.get("nullable").is_some() || root.get("default").is_some() {
        found.push("<root>: the root can be neither nullable nor defaulted".to_string());
    }
    walk("", root, &mut found);
    found
}

fn walk(path: &str, node: &Value, found: &mut Vec<String>) {
    let mut problem = |what: String| found.push(format!("{}: {what}", display(path)));
    let Some(schema) = node.as_object() else {
        problem("a schema must be an object".into());
        return;
    };
    for key in schema.keys() {
        if !ALLOWED_KEYWORDS.contains(&key.as_str())
            && !KUBERNETES_EXTENSIONS.contains(&key.as_str())
        {
            problem(format!("keyword `{key}` is not allowed in a CRD schema"));
        }
    }
    let is_true = |key: &str| schema.get(key) == Some(&Value::Bool(true));
    let int_or_string = is_true("x-kubernetes-int-or-string");
    let ty = schema.get("type").and_then(Value::as_str);

    match (int_or_string, ty) {
        (true, Some(_)) => problem("x-kubernetes-int-or-string must not also set a type".into()),
        (true, None) => {
            if schema.contains_key("x-kubernetes-validations") {
                // The API server costs a rule here as if `self` were a 3 MiB string.
                problem("use `pattern`, not CEL, on an int-or-string field".into());
            }
            if let Some(any_of) = schema.get("anyOf") {
                let expected = serde_json::json!([{ "type": "integer" }, { "type": "string" }]);
                if any_of != &expected {
                    problem(
                        "x-kubernetes-int-or-string allows only anyOf [integer, string]".into(),
                    );
                }
            }
        }
        (false, None) => problem("every field needs a type".into()),
        (false, Some(t)) if !TYPES.contains(&t) => problem(format!("unknown type `{t}`")),
        (false, Some(_)) => {}
    }
    for junctor in ["allOf", "oneOf", "not"] {
        if schema.contains_key(junctor) {
            problem(format!(
                "`{junctor}` is not used in this schema; it hides types from pruning"
            ));
        }
    }
    if schema.contains_key("anyOf") && !int_or_string {
        problem("`anyOf` is only allowed in the int-or-string form".into());
    }
    if let Some(nullable) = schema.get("nullable") {
        if !nullable.is_boolean() {
            problem("nullable must be a boolean".into());
        }
    }

    check_object(path, schema, ty, found);
    check_array(path, schema, ty, found);
    check_enum(path, schema, ty, found);
    check_default(path, node, found);
    check_rules(path, node, found);
}

fn check_object(
    path: &str,
    schema: &Map<String, Value>,
    ty: Option<&str>,
    found: &mut Vec<String>,
) {
    let properties = schema.get("properties");
    let additional = schema.get("additionalProperties");
    if (properties.is_some() || additional.is_some()) && ty != Some("object") {
        found.push(format!("{}: properties need type object", display(path)));
    }
    if properties.is_some() && additional.is_some() {
        found.push(format!(
            "{}: properties and additionalProperties are mutually exclusive",
            display(path)
        ));
    }
    if let Some(additional) = additional {
        if !additional.is_object() {
            found.push(format!(
                "{}: additionalProperties must be a schema",
                display(path)
            ));
        } else {
            walk(&format!("{path}.*"), additional, found);
        }
    }
    if let Some(properties) = properties.and_then(Value::as_object) {
        for (name, property) in properties {
            walk(&format!("{path}.{name}"), property, found);
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if properties.and_then(|p| p.get(name)).is_none() {
                found.push(format!(
                    "{}: required field `{name}` is not declared",
                    display(path)
                ));
            }
        }
    }
}

fn check_array(path: &str, schema: &Map<String, Value>, ty: Option<&str>, found: &mut Vec<String>) {
    let items = schema.get("items");
    match (ty, items) {
        (Some("array"), Some(items)) if items.is_object() => {
            walk(&format!("{path}[]"), items, found)
        }
        (Some("array"), _) => found.push(format!(
            "{}: an array needs one items schema",
            display(path)
        )),
        (_, Some(_)) => found.push(format!("{}: items need type array", display(path))),
        _ => {}
    }
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array);
    if keys.is_some() && list_type != Some("map") {
        found.push(format!(
            "{}: list-map-keys need x-kubernetes-list-type map",
            display(path)
        ));
    }
    match list_type {
        None | Some("atomic") | Some("set") => {}
        Some("map") => check_list_map(path, items, keys, found),
        Some(other) => found.push(format!("{}: unknown list type `{other}`", display(path))),
    }
}

/// A `map` list merges items by key under server-side apply: every key must always be present.
fn check_list_map(
    path: &str,
    items: Option<&Value>,
    keys: Option<&Vec<Value>>,
    found: &mut Vec<String>,
) {
    let here = display(path);
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        found.push(format!(
            "{here}: a map list needs x-kubernetes-list-map-keys"
        ));
        return;
    };
    let Some(items) = items else { return };
    if items.get("type").and_then(Value::as_str) != Some("object") {
        found.push(format!("{here}: map list items must be objects"));
    }
    if items.get("nullable") == Some(&Value::Bool(true)) {
        found.push(format!("{here}: map list items must not be nullable"));
    }
    let required: Vec<&str> = items
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for key in keys.iter().filter_map(Value::as_str) {
        let Some(property) = items.get("properties").and_then(|p| p.get(key)) else {
            found.push(format!(
                "{here}: list-map key `{key}` is not a property of the items"
            ));
            continue;
        };
        if !required.contains(&key) && property.get("default").is_none() {
            found.push(format!(
                "{here}: list-map key `{key}` must be required or defaulted"
            ));
        }
        if property.get("nullable") == Some(&Value::Bool(true)) {
            found.push(format!("{here}: list-map key `{key}` must not be nullable"));
        }
    }
}

fn check_enum(path: &str, schema: &Map<String, Value>, ty: Option<&str>, found: &mut Vec<String>) {
    let Some(values) = schema.get("enum").and_then(Value::as_array) else {
        return;
    };
    for value in values {
        let fits = match ty {
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !fits {
            found.push(format!(
                "{}: enum value {value} does not fit type {ty:?}",
                display(path)
            ));
        }
    }
}

/// The API server prunes a default and validates it against its own schema, CEL rules included.
fn check_default(path: &str, node: &Value, found: &mut Vec<String>) {
    let Some(default) = node.get("default") else {
        return;
    };
    let mut problems = json_schema::violations(node, default, UnknownFields::Reject);
    if let Err(errors) = kube::core::cel::Validator::new().validate(node, default, None) {
        problems.extend(errors.as_slice().iter().map(ToString::to_string));
    }
    for problem in problems {
        found.push(format!(
            "{}: default {default} is invalid: {problem}",
            display(path)
        ));
    }
}

fn check_rules(path: &str, node: &Value, found: &mut Vec<String>) {
    let Some(rules) = node.get("x-kubernetes-validations") else {
        return;
    };
    let here = display(path);
    for rule in rules.as_array().into_iter().flatten() {
        if rule.get("rule").and_then(Value::as_str).is_none() {
            found.push(format!("{here}: a validation needs a `rule`"));
        }
        if rule
            .get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| m.contains('\n'))
        {
            found.push(format!("{here}: a validation message must be one line"));
        }
    }
    // Compile this node's rules only: its children are compiled when the walk reaches them.
    let mut own_rules = Map::new();
    own_rules.insert("x-kubernetes-validations".into(), rules.clone());
    for error in kube::core::cel::compile_schema(&Value::Object(own_rules)).compilation_errors() {
        found.push(format!("{here}: CEL rule does not compile: {error:?}"));
    }
}

fn display(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path.trim_start_matches('.')
    }
}
