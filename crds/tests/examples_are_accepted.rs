//! Every example in manifests/examples is a ModelDeployment the API server accepts as it is:
//! it matches the schema with no field that would be silently pruned, passes the CEL rules,
//! and survives a round trip through the Rust types unchanged.

mod support;

use std::path::{Path, PathBuf};

use kandle_crds::ModelDeployment;
use support::json_schema::{self, UnknownFields};
use support::{cel_violations, open_api_schema, read_yaml, yaml_files_in, EXAMPLES_DIR};

/// The examples the docs promise; more may be added.
const PROMISED: &[&str] = &[
    "embedding-cpu.yaml",
    "embedding-gpu.yaml",
    "canary-rollout.yaml",
    "canary-httproute.yaml",
    "autoscaled.yaml",
    "http-source.yaml",
    "image-source.yaml",
    "chat.yaml",
];

fn examples() -> Vec<PathBuf> {
    let files = yaml_files_in(EXAMPLES_DIR);
    for promised in PROMISED {
        assert!(
            files.iter().any(|f| f.ends_with(promised)),
            "{EXAMPLES_DIR}/{promised} is missing"
        );
    }
    files
}

/// The generated `ModelDeployment` root has no `PartialEq`; its parts do.
fn assert_same(got: &ModelDeployment, want: &ModelDeployment, file: &Path, format: &str) {
    let parts = |md: &ModelDeployment| (md.metadata.clone(), md.spec.clone(), md.status.clone());
    assert_eq!(
        parts(got),
        parts(want),
        "{}: {format} round trip changed it",
        file.display()
    );
}

#[test]
fn examples_deserialize_and_round_trip_through_the_rust_types() {
    for file in examples() {
        let manifest = read_yaml(&file);
        let md: ModelDeployment = serde_json::from_value(manifest.clone())
            .unwrap_or_else(|e| panic!("{}: not a ModelDeployment: {e}", file.display()));
        assert_eq!(
            md.metadata.name.as_deref(),
            manifest["metadata"]["name"].as_str()
        );

        let json = serde_json::to_value(&md).expect("a ModelDeployment serializes to JSON");
        let again: ModelDeployment =
            serde_json::from_value(json).expect("serialized JSON reads back");
        assert_same(&again, &md, &file, "JSON");

        let yaml = serde_yaml::to_string(&md).expect("a ModelDeployment serializes to YAML");
        let again: ModelDeployment =
            serde_yaml::from_str(&yaml).expect("serialized YAML reads back");
        assert_same(&again, &md, &file, "YAML");
    }
}

#[test]
fn examples_match_the_schema_without_pruned_fields() {
    let schema = open_api_schema();
    for file in examples() {
        let violations = json_schema::violations(&schema, &read_yaml(&file), UnknownFields::Reject);
        assert!(
            violations.is_empty(),
            "{} would be rejected or pruned:\n{}",
            file.display(),
            violations.join("\n")
        );
    }
}

#[test]
fn examples_pass_the_cel_rules() {
    let schema = open_api_schema();
    for file in examples() {
        let violations = cel_violations(&schema, &read_yaml(&file));
        assert!(
            violations.is_empty(),
            "{} fails CEL rules:\n{}",
            file.display(),
            violations.join("\n")
        );
    }
}

#[test]
fn a_misspelled_field_in_an_example_would_be_caught() {
    let schema = open_api_schema();
    let mut manifest = read_yaml(PathBuf::from(EXAMPLES_DIR).join("embedding-cpu.yaml"));
    manifest["spec"]["model"]["maxSequenceLenght"] = 256.into();
    let violations = json_schema::violations(&schema, &manifest, UnknownFields::Reject);
    assert!(
        violations
            .iter()
            .any(|v| v.starts_with("spec.model:") && v.contains("maxSequenceLenght")),
        "{violations:?}"
    );
}
