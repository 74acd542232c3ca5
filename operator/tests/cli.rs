//! The `kandle-operator` binary's command line: `crd` prints exactly the committed CRD, and
//! `--help` documents every flag of the README's table.

use std::path::Path;
use std::process::Command;

fn operator(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kandle-operator"))
        .args(args)
        .output()
        .expect("kandle-operator runs");
    assert!(
        output.status.success(),
        "kandle-operator {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the output is UTF-8")
}

#[test]
fn crd_prints_the_committed_custom_resource_definition() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/crds/kandle.dev_modeldeployments.yaml");
    let committed = std::fs::read_to_string(committed).expect("the CRD is committed");
    assert_eq!(
        operator(&["crd"]),
        committed,
        "manifests/crds/ is stale: regenerate it with `kandle-operator crd`"
    );
}

#[test]
fn help_lists_every_flag() {
    let help = operator(&["--help"]);
    for flag in [
        "--namespace",
        "--runtime-image",
        "--metrics-port",
        "--leader-election",
        "--lease-namespace",
        "--lease-name",
        "--identity",
        "--log-format",
        "--kube-api-qps",
        "--kube-api-burst",
        "--reconcile-concurrency",
    ] {
        assert!(
            help.contains(flag),
            "`--help` does not mention {flag}:\n{help}"
        );
    }
}
