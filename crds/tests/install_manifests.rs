//! `kubectl apply -k manifests/` installs a working, least-privilege operator: every listed file
//! exists and is a Kubernetes object, the RBAC grants what the operator uses and nothing
//! broader, and the operator Deployment is wired to its ServiceAccount, flags, Lease and probes.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use serde_json::Value;
use support::{read_yaml, read_yaml_documents};

const NAMESPACE: &str = "kandle-system";
const SERVICE_ACCOUNT: &str = "kandle-operator";
const METRICS_PORT: i32 = 8081;

fn installed_objects() -> Vec<Value> {
    let kustomization = read_yaml("manifests/kustomization.yaml");
    let resources = kustomization["resources"]
        .as_array()
        .expect("kustomization lists resources");
    resources
        .iter()
        .map(|r| r.as_str().expect("a resource is a path"))
        .flat_map(|path| read_yaml_documents(format!("manifests/{path}")))
        .collect()
}

fn installed<T: serde::de::DeserializeOwned>(kind: &str, name: &str) -> T {
    let object = installed_objects()
        .into_iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("kustomization installs no {kind} {name}"));
    serde_json::from_value(object).unwrap_or_else(|e| panic!("{kind} {name} is malformed: {e}"))
}

#[test]
fn kustomization_installs_crd_namespace_rbac_and_operator() {
    let objects = installed_objects();
    let kinds: Vec<String> = objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    for expected in [
        "Namespace/kandle-system",
        "CustomResourceDefinition/modeldeployments.kandle.dev",
        "ServiceAccount/kandle-operator",
        "ClusterRole/kandle-operator",
        "ClusterRoleBinding/kandle-operator",
        "Role/kandle-operator-leader-election",
        "RoleBinding/kandle-operator-leader-election",
        "Deployment/kandle-operator",
        "Service/kandle-operator-metrics",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "missing {expected}; installed: {kinds:?}"
        );
    }
    for object in &objects {
        let namespaced = !matches!(
            object["kind"].as_str(),
            Some("Namespace" | "CustomResourceDefinition" | "ClusterRole" | "ClusterRoleBinding")
        );
        if namespaced {
            assert_eq!(object["metadata"]["namespace"], NAMESPACE, "{object}");
        }
    }
}

fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.iter().flatten().any(|g| g == group)
            && r.resources.iter().flatten().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
    })
}

// The exact set is held in step with the operator's code by operator/tests/rbac.rs; this checks
// the calls that the install cannot work without.
#[test]
fn cluster_role_grants_what_the_operator_uses() {
    let role: ClusterRole = installed("ClusterRole", SERVICE_ACCOUNT);
    let rules = role.rules.unwrap_or_default();
    // Server-side apply of a missing child needs create as well as patch.
    let children: &[&str] = &["list", "watch", "create", "patch", "delete"];
    let wanted: Vec<(&str, &str, &[&str])> = vec![
        ("kandle.dev", "modeldeployments", &["get", "list", "watch"]),
        ("kandle.dev", "modeldeployments/status", &["patch"]),
        ("kandle.dev", "modeldeployments/finalizers", &["update"]),
        ("apps", "deployments", children),
        ("apps", "controllerrevisions", children),
        ("", "services", children),
        ("policy", "poddisruptionbudgets", children),
        ("", "pods", &["list", "watch"]),
        ("", "persistentvolumeclaims", &["get"]),
        ("events.k8s.io", "events", &["create", "patch"]),
    ];
    for (group, resource, verbs) in wanted {
        for verb in verbs {
            assert!(
                allows(&rules, group, resource, verb),
                "cannot {verb} {group}/{resource}"
            );
        }
    }
}

#[test]
fn rbac_has_no_wildcards_and_no_secrets() {
    let cluster_role: ClusterRole = installed("ClusterRole", SERVICE_ACCOUNT);
    let role: Role = installed("Role", "kandle-operator-leader-election");
    let rules = cluster_role
        .rules
        .into_iter()
        .flatten()
        .chain(role.rules.into_iter().flatten());
    for rule in rules {
        let words = rule
            .api_groups
            .iter()
            .flatten()
            .chain(rule.resources.iter().flatten())
            .chain(&rule.verbs);
        for word in words {
            assert_ne!(word, "*", "wildcard in {rule:?}");
            assert!(
                !word.starts_with("secrets"),
                "the operator never reads Secrets: {rule:?}"
            );
        }
        assert!(!rule
            .verbs
            .iter()
            .any(|v| v == "deletecollection" || v == "escalate" || v == "bind"));
    }
}

#[test]
fn leader_election_is_limited_to_the_operator_lease() {
    let role: Role = installed("Role", "kandle-operator-leader-election");
    let rules = role.rules.unwrap_or_default();
    assert!(allows(&rules, "coordination.k8s.io", "leases", "create"));
    for verb in ["get", "update"] {
        let rule = rules
            .iter()
            .find(|r| r.verbs.iter().any(|v| v == verb))
            .unwrap_or_else(|| panic!("cannot {verb} the Lease"));
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["kandle-operator".to_string()][..])
        );
    }
}

fn operator_container(deployment: &Deployment) -> Container {
    let pod = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("a pod template");
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
    assert_eq!(pod.containers.len(), 1, "one operator container");
    pod.containers[0].clone()
}

#[test]
fn operator_runs_with_its_flags_lease_identity_and_probes() {
    let deployment: Deployment = installed("Deployment", "kandle-operator");
    let container = operator_container(&deployment);
    assert_eq!(
        container.image.as_deref(),
        Some("ghcr.io/kandle-dev/kandle-operator:0.1.0")
    );
    let args = container.args.clone().unwrap_or_default();
    for flag in [
        "--runtime-image=ghcr.io/kandle-dev/kandle-runtime:0.1.0",
        "--metrics-port=8081",
        "--leader-election",
    ] {
        assert!(args.iter().any(|a| a == flag), "missing {flag} in {args:?}");
    }
    let env = container.env.clone().unwrap_or_default();
    for (name, field) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let var = env
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("missing env {name}"));
        let from = var
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(from, Some(field), "{name} comes from the downward API");
    }
    for (probe, path) in [
        (&container.liveness_probe, "/healthz"),
        (&container.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("HTTP probes");
        assert_eq!(get.path.as_deref(), Some(path));
    }
    let port = container
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("metrics"));
    assert_eq!(port.map(|p| p.container_port), Some(METRICS_PORT));
}

#[test]
fn operator_runs_non_root_read_only_without_capabilities() {
    let deployment: Deployment = installed("Deployment", "kandle-operator");
    let container = operator_container(&deployment);
    let security = container
        .security_context
        .expect("a container security context");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let dropped = security
        .capabilities
        .and_then(|c| c.drop)
        .unwrap_or_default();
    assert_eq!(dropped, ["ALL"]);
    assert_eq!(
        security.seccomp_profile.map(|s| s.type_),
        Some("RuntimeDefault".to_string())
    );
    let resources = container.resources.expect("resources");
    assert!(
        resources.requests.is_some() && resources.limits.is_some(),
        "requests and limits are set"
    );
}

#[test]
fn metrics_service_selects_the_operator_pods() {
    let deployment: Deployment = installed("Deployment", "kandle-operator");
    let service: Service = installed("Service", "kandle-operator-metrics");
    let pod_labels = deployment
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let spec = service.spec.expect("a service spec");
    let selector = spec.selector.unwrap_or_default();
    assert!(!selector.is_empty());
    for (key, value) in &selector {
        assert_eq!(
            pod_labels.get(key),
            Some(value),
            "selector {key}={value} matches the pods"
        );
    }
    let port = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.name.as_deref() == Some("metrics"));
    assert_eq!(port.map(|p| p.port), Some(METRICS_PORT));
}
