//! Label and field selectors of LIST, WATCH and DELETE-collection requests, parsed from their
//! query-string form (`app=x,tier in (a,b),!legacy`) and matched against stored objects.

use serde_json::Value;

use super::errors::ApiError;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas outside parentheses.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut terms, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(s[start..].trim());
    terms.into_iter().filter(|t| !t.is_empty()).collect()
}

fn parse_set(key: &str, rest: &str, raw: &str) -> Result<Vec<String>, ApiError> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "label selector {raw:?}: values of {key:?} must be in parentheses"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_term(term: &str) -> Result<Requirement, ApiError> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist(key.trim().to_string()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
    }
    if let Some((k, rest)) = term.split_once(" notin ") {
        return Ok(Requirement::NotIn(
            k.trim().into(),
            parse_set(k, rest, term)?,
        ));
    }
    if let Some((k, rest)) = term.split_once(" in ") {
        return Ok(Requirement::In(k.trim().into(), parse_set(k, rest, term)?));
    }
    if term.contains(char::is_whitespace) {
        return Err(ApiError::bad_request(format!(
            "unable to parse label selector requirement {term:?}"
        )));
    }
    Ok(Requirement::Exists(term.to_string()))
}

impl LabelSelector {
    /// Parses the query-string form of a label selector.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        split_terms(raw)
            .into_iter()
            .map(parse_term)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// One `key=value` requirement, if the selector has any.
    pub fn an_equality(&self) -> Option<(&str, &str)> {
        self.0.iter().find_map(|r| match r {
            Requirement::Equals(k, v) => Some((k.as_str(), v.as_str())),
            _ => None,
        })
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::NotIn(k, vs) => !label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// A parsed `fieldSelector`: `path=value` / `path!=value` terms over dotted field paths such as
/// `metadata.name` or `involvedObject.uid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the query-string form of a field selector.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in split_terms(raw) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector term {term:?}"
                )));
            };
            terms.push((
                format!("/{}", path.trim().replace('.', "/")),
                equal,
                v_trim(value),
            ));
        }
        Ok(Self(terms))
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the object's fields satisfy every term; a missing field reads as "".
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(pointer, equal, value)| {
            let actual = match object.pointer(pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

fn v_trim(value: &str) -> String {
    value.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": labels}})
    }

    #[test]
    fn label_selector_forms_match_like_the_api_server() {
        let obj = pod(json!({"app": "web", "tier": "gpu"}));
        let sel = |s: &str| LabelSelector::parse(s).expect("selector parses");
        assert!(sel("app=web").matches(&obj));
        assert!(sel("app==web,tier").matches(&obj));
        assert!(sel("tier in (cpu, gpu),!legacy").matches(&obj));
        assert!(!sel("tier notin (gpu)").matches(&obj));
        assert!(!sel("app!=web").matches(&obj));
        assert!(!sel("missing").matches(&obj));
        assert!(sel("").matches(&obj));
    }

    #[test]
    fn malformed_label_selector_is_a_bad_request() {
        let err = LabelSelector::parse("tier in gpu").expect_err("missing parentheses");
        assert_eq!(err.code, 400);
    }

    #[test]
    fn field_selector_reads_dotted_paths() {
        let obj = pod(json!({}));
        assert!(FieldSelector::parse("metadata.name=p")
            .expect("parses")
            .matches(&obj));
        assert!(!FieldSelector::parse("metadata.name!=p")
            .expect("parses")
            .matches(&obj));
    }
}
