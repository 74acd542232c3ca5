//! Names a request to the API server as `kubectl` and RBAC do: the verb (`get`, `list`,
//! `watch`, `create`, `patch`, ...) and the resource (`deployments`, `modeldeployments/status`).
//! Pure, from the method, path and query alone.

/// What a request does: its verb and resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestKind {
    /// RBAC verb.
    pub verb: &'static str,
    /// Plural resource, `resource/subresource` for a subresource; `other` off the resource API.
    pub resource: String,
}

/// The verb and resource of `method path?query`.
pub fn classify(method: &str, path: &str, query: Option<&str>) -> RequestKind {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => {
            return RequestKind {
                verb: verb_of(method, false, false),
                resource: "other".into(),
            }
        }
    };
    // namespaces/<ns>/<resource>... is namespaced; namespaces/<ns> alone is the Namespace.
    let rest = match rest {
        ["namespaces", _ns, inner @ ..] if !inner.is_empty() => inner,
        other => other,
    };
    let resource = match rest {
        [] => "other".to_string(),
        [plural, _name, sub, ..] => format!("{plural}/{sub}"),
        [plural, ..] => plural.to_string(),
    };
    let watch = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    RequestKind {
        verb: verb_of(method, rest.len() >= 2, watch),
        resource,
    }
}

fn verb_of(method: &str, named: bool, watch: bool) -> &'static str {
    match method {
        "GET" if watch => "watch",
        "GET" if named => "get",
        "GET" => "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" if named => "delete",
        "DELETE" => "deletecollection",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(method: &str, path: &str, query: Option<&str>) -> (&'static str, String) {
        let k = classify(method, path, query);
        (k.verb, k.resource)
    }

    #[test]
    fn reads_are_gets_lists_and_watches() {
        assert_eq!(
            kind("GET", "/apis/apps/v1/namespaces/ml/deployments/a", None),
            ("get", "deployments".into())
        );
        assert_eq!(
            kind("GET", "/api/v1/namespaces/ml/pods", Some("labelSelector=x")),
            ("list", "pods".into())
        );
        assert_eq!(
            kind(
                "GET",
                "/apis/kandle.dev/v1alpha1/modeldeployments",
                Some("watch=true&resourceVersion=5")
            ),
            ("watch", "modeldeployments".into())
        );
    }

    #[test]
    fn writes_name_their_subresource() {
        assert_eq!(
            kind(
                "PATCH",
                "/apis/kandle.dev/v1alpha1/namespaces/ml/modeldeployments/m/status",
                Some("fieldManager=kandle-operator&force=true")
            ),
            ("patch", "modeldeployments/status".into())
        );
        assert_eq!(
            kind("POST", "/apis/events.k8s.io/v1/namespaces/ml/events", None),
            ("create", "events".into())
        );
        assert_eq!(
            kind(
                "DELETE",
                "/apis/apps/v1/namespaces/ml/controllerrevisions/r",
                None
            ),
            ("delete", "controllerrevisions".into())
        );
    }

    #[test]
    fn namespaces_themselves_and_other_paths() {
        assert_eq!(
            kind("GET", "/api/v1/namespaces/ml", None),
            ("get", "namespaces".into())
        );
        assert_eq!(kind("GET", "/version", None), ("list", "other".into()));
    }
}
