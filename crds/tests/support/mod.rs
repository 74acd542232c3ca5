//! Shared helpers of the kandle-crds tests: where the committed manifests live, the CRD's
//! `openAPIV3Schema` read from the committed YAML, and checking an object the way the API server
//! would (OpenAPI schema first, then the CEL rules) without a cluster.
#![allow(dead_code)] // each test crate uses its own subset of these helpers

pub mod json_schema;
pub mod structural;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_json::Value;

/// The committed, generated CRD, relative to the repository root.
pub const CRD_FILE: &str = "manifests/crds/kandle.dev_modeldeployments.yaml";
/// The command that regenerates [`CRD_FILE`].
pub const REGENERATE_CRD: &str =
    "cargo run -q -p kandle-crds --example print_crd > manifests/crds/kandle.dev_modeldeployments.yaml";
/// Example ModelDeployments that must be accepted as they are.
pub const EXAMPLES_DIR: &str = "manifests/examples";
/// ModelDeployments the API server must reject, one rule each.
pub const INVALID_EXAMPLES_DIR: &str = "manifests/examples/invalid";

/// The repository root (the parent of the kandle-crds package).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the kandle-crds package lives inside the workspace")
        .to_path_buf()
}

/// Reads a file below the repository root, naming it when that fails.
pub fn read_repo_file(relative: impl AsRef<Path>) -> String {
    let path = repo_root().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Parses every YAML document of a file below the repository root as JSON values.
pub fn read_yaml_documents(relative: impl AsRef<Path>) -> Vec<Value> {
    let relative = relative.as_ref();
    let text = read_repo_file(relative);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("parsing {} as YAML: {e}", relative.display()))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Parses a file that holds exactly one YAML document.
pub fn read_yaml(relative: impl AsRef<Path>) -> Value {
    let relative = relative.as_ref();
    let mut docs = read_yaml_documents(relative);
    assert_eq!(
        docs.len(),
        1,
        "{} must hold exactly one YAML document",
        relative.display()
    );
    docs.remove(0)
}

/// The committed CRD as JSON.
pub fn committed_crd() -> Value {
    read_yaml(CRD_FILE)
}

/// The `openAPIV3Schema` of the committed CRD's only version.
pub fn open_api_schema() -> Value {
    let crd = committed_crd();
    let versions = crd["spec"]["versions"]
        .as_array()
        .expect("the CRD lists its versions");
    assert_eq!(versions.len(), 1, "the CRD serves exactly one version");
    versions[0]["schema"]["openAPIV3Schema"].clone()
}

/// The `*.yaml` files directly inside a folder below the repository root, sorted, as paths
/// relative to the root.
pub fn yaml_files_in(relative_dir: &str) -> Vec<PathBuf> {
    let dir = repo_root().join(relative_dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("reading a directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| Path::new(relative_dir).join(path.file_name().expect("a file has a name")))
        .collect();
    files.sort();
    files
}

/// Everything the API server would reject in `object`, as `field.path: message` lines: the
/// OpenAPI schema violations (unknown fields allowed, as the server prunes them) followed by
/// the failed CEL rules (evaluated after schema defaulting, as the server does).
pub fn api_server_violations(schema: &Value, object: &Value) -> Vec<String> {
    let mut violations = json_schema::violations(schema, object, json_schema::UnknownFields::Prune);
    violations.extend(cel_violations(schema, object));
    violations
}

/// The CEL rules (`x-kubernetes-validations`) that `object` fails, as `field.path: message`.
pub fn cel_violations(schema: &Value, object: &Value) -> Vec<String> {
    match kube::core::cel::Validator::new().validate(schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.as_slice().iter().map(ToString::to_string).collect(),
    }
}
