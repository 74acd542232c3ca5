//! `manifests/rbac/` grants exactly what [`kandle_operator::rbac::permissions`] lists, and that
//! table covers every kind the operator's code calls.
//!
//! The second check reads `operator/src` as text. It finds the kinds written as `Api<Kind>`,
//! `Api::<Kind>` or a turbofish `::<Kind>` (e.g. `scoped::<Deployment>`, `ssa::<Service>`),
//! where `Kind` is imported from `k8s_openapi` or `kandle_crds` (or written with that
//! path), and kube's event `Recorder`. It cannot see a kind reached without naming it there: an
//! `Api` whose type is only inferred, a type alias, a dynamic API (`DynamicObject`), calls that
//! other libraries make on our behalf besides the Recorder; nor does it check verbs. A missing
//! verb shows at run time in the end-to-end tier, where the operator runs as its ServiceAccount
//! with this RBAC enforced.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role as K8sRole};
use kandle_operator::rbac::{permissions, Role};

/// One verb on one resource, optionally limited to one object name.
type Grant = (Role, String, String, Option<String>, String);

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read_yaml<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let text = std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is malformed: {e}"))
}

fn granted_by(role: Role, rules: Vec<PolicyRule>) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in rules {
        let names: Vec<Option<String>> = match rule.resource_names.unwrap_or_default() {
            names if names.is_empty() => vec![None],
            names => names.into_iter().map(Some).collect(),
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for name in &names {
                    for verb in &rule.verbs {
                        let grant = (
                            role,
                            group.clone(),
                            resource.clone(),
                            name.clone(),
                            verb.clone(),
                        );
                        grants.insert(grant);
                    }
                }
            }
        }
    }
    grants
}

fn render(grants: &BTreeSet<&Grant>) -> String {
    grants
        .iter()
        .map(|(role, group, resource, name, verb)| {
            let name = name.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
            let resource = match group.as_str() {
                "" => resource.clone(),
                group => format!("{group}/{resource}"),
            };
            format!("\n  {role:?}: {verb} {resource}{name}")
        })
        .collect()
}

#[test]
fn manifests_grant_exactly_the_permissions_the_operator_declares() {
    let cluster_role: ClusterRole = read_yaml("manifests/rbac/cluster-role.yaml");
    let leader_role: K8sRole = read_yaml("manifests/rbac/leader-election-role.yaml");
    let mut granted = granted_by(Role::Cluster, cluster_role.rules.unwrap_or_default());
    granted.extend(granted_by(
        Role::LeaderElection,
        leader_role.rules.unwrap_or_default(),
    ));
    let hub_tokens: ClusterRole = read_yaml("manifests/rbac/optional/hub-token-reader.yaml");
    granted.extend(granted_by(
        Role::HubTokens,
        hub_tokens.rules.unwrap_or_default(),
    ));

    let mut needed = BTreeSet::new();
    for p in permissions() {
        let names: Vec<Option<String>> = if p.names.is_empty() {
            vec![None]
        } else {
            p.names.iter().cloned().map(Some).collect()
        };
        for name in names {
            for verb in &p.verbs {
                needed.insert((
                    p.role,
                    p.group.clone(),
                    p.resource.clone(),
                    name.clone(),
                    verb.to_string(),
                ));
            }
        }
    }

    let extra: BTreeSet<&Grant> = granted.difference(&needed).collect();
    let missing: BTreeSet<&Grant> = needed.difference(&granted).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "manifests/rbac/ and operator/src/rbac.rs disagree.\
         \ngranted but not declared (remove from the YAML, or declare with a reason):{}\
         \ndeclared but not granted (add to the YAML):{}",
        render(&extra),
        render(&missing),
    );
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The types named in the `use k8s_openapi…` and `use kandle_crds…` statements of `source`.
fn imported_api_types(source: &str) -> BTreeSet<String> {
    let mut types = BTreeSet::new();
    for statement in source.split(';') {
        let at = ["use k8s_openapi", "use kandle_crds"]
            .iter()
            .find_map(|prefix| statement.find(prefix));
        if let Some(at) = at {
            let path = &statement[at..];
            types.extend(
                identifiers(path)
                    .filter(|i| starts_upper(i))
                    .map(str::to_string),
            );
        }
    }
    types
}

fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
}

fn starts_upper(word: &str) -> bool {
    word.chars().next().is_some_and(char::is_uppercase) && word.len() > 1
}

/// Kinds `source` passes to `Api` or a turbofish, and `Event` where it uses kube's Recorder.
fn kinds_called(source: &str) -> BTreeSet<String> {
    let imported = imported_api_types(source);
    let mut kinds = BTreeSet::new();
    for opening in ["Api<", "::<"] {
        for (at, _) in source.match_indices(opening) {
            let rest = &source[at + opening.len()..];
            let Some(end) = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            else {
                continue;
            };
            // Only a plain path closed right away: `Vec<_>` or `Api<K, X>` are not kinds.
            if !rest[end..].starts_with('>') {
                continue;
            }
            let path = &rest[..end];
            let kind = path.rsplit("::").next().unwrap_or(path);
            let from_api = path.contains("k8s_openapi::") || path.contains("kandle_crds::");
            if from_api || imported.contains(kind) {
                kinds.insert(kind.to_string());
            }
        }
    }
    if identifiers(source).any(|word| word == "Recorder") {
        kinds.insert("Event".to_string());
    }
    kinds
}

#[test]
fn every_kind_the_operator_calls_is_declared() {
    let mut files = Vec::new();
    rust_files(&repo_file("operator/src"), &mut files);
    let declared: BTreeSet<String> = permissions().into_iter().filter_map(|p| p.kind).collect();
    let mut undeclared = Vec::new();
    let mut seen = BTreeSet::new();
    for file in files {
        let source = std::fs::read_to_string(&file).expect("a readable source file");
        for kind in kinds_called(&source) {
            if !declared.contains(&kind) {
                undeclared.push(format!("\n  {kind} in {}", file.display()));
            }
            seen.insert(kind);
        }
    }
    assert!(
        undeclared.is_empty(),
        "the operator calls kinds operator/src/rbac.rs does not declare (add them with their verbs \
         and a reason, and grant them in manifests/rbac/):{}",
        undeclared.concat()
    );
    // The scan itself works: it finds the kinds the controller and the election call today.
    for kind in ["ModelDeployment", "Deployment", "Lease", "Event"] {
        assert!(
            seen.contains(kind),
            "the scan missed {kind}; found {seen:?}"
        );
    }
}

#[test]
fn the_scan_finds_kinds_in_api_types_and_turbofish_and_nothing_else() {
    let source = "use k8s_openapi::api::core::v1::{Node, Pod};\n\
                  use kandle_crds::ModelDeployment;\n\
                  fn f() { let a: Api<Pod> = x; scoped::<ModelDeployment>(c);\n\
                  Api::<k8s_openapi::api::core::v1::ConfigMap>::all(c);\n\
                  let v = y.collect::<Vec<_>>(); z.parse::<u32>(); w::<String>(); }";
    let found: Vec<String> = kinds_called(source).into_iter().collect();
    assert_eq!(found, ["ConfigMap", "ModelDeployment", "Pod"]);
}
