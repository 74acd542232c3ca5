//! Every manifest in manifests/examples/invalid breaks one rule, and the schema or a CEL rule
//! rejects it with a message naming the field. Each file states the expected error on a
//! `# expect: ...` comment line.

mod support;

use std::path::Path;

use support::{
    api_server_violations, open_api_schema, read_repo_file, read_yaml, yaml_files_in,
    INVALID_EXAMPLES_DIR,
};

const EXPECT_PREFIX: &str = "# expect:";

fn expected_error(file: &Path) -> String {
    let text = read_repo_file(file);
    let expected: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix(EXPECT_PREFIX))
        .map(str::trim)
        .collect();
    assert_eq!(
        expected.len(),
        1,
        "{} needs exactly one `{EXPECT_PREFIX}` line",
        file.display()
    );
    expected[0].to_string()
}

#[test]
fn every_invalid_manifest_is_rejected_naming_the_field() {
    let schema = open_api_schema();
    let files = yaml_files_in(INVALID_EXAMPLES_DIR);
    assert!(
        files.len() >= 14,
        "expected one invalid manifest per rule, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let expected = expected_error(file);
        let violations = api_server_violations(&schema, &read_yaml(file));
        if !violations.iter().any(|v| v.contains(&expected)) {
            failures.push(format!(
                "{}: expected an error containing {expected:?}, got:\n    {}",
                file.display(),
                if violations.is_empty() {
                    "nothing (accepted)".to_string()
                } else {
                    violations.join("\n    ")
                }
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_manifests_break_only_their_own_rule() {
    let schema = open_api_schema();
    for file in yaml_files_in(INVALID_EXAMPLES_DIR) {
        let violations = api_server_violations(&schema, &read_yaml(&file));
        assert_eq!(
            violations.len(),
            1,
            "{} should break exactly one rule: {violations:#?}",
            file.display()
        );
    }
}
