use kandle_crds::Dtype;

use super::*;
use crate::plan::HASH_LEN;
use crate::testing::md;

fn hash(md: &ModelDeployment) -> String {
    RevisionSnapshot::of(md, &config()).hash()
}

#[test]
fn a_revision_is_named_after_the_deployment_and_ten_hex_characters() {
    let name = revision_of(&md("bert").build());
    let suffix = name.strip_prefix("bert-").expect("prefixed by the md name");
    assert_eq!(suffix.len(), HASH_LEN);
    assert!(suffix
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
}

#[test]
fn the_hash_ignores_what_does_not_shape_the_pods() {
    let base = md("bert").build();
    let unchanged = [
        md("bert").with_label("team", "search").build(),
        md("bert").with_replicas(7).build(),
        md("bert").with_autoscaling(1, 10).build(),
        md("bert").with_canary(&[10, 50]).build(),
        md("bert").with_history_limit(1).build(),
        md("bert").paused().build(),
        md("bert").with_generation(9).build(),
        md("bert").with_status(Default::default()).build(),
    ];
    for other in unchanged {
        assert_eq!(hash(&other), hash(&base), "{:?}", other.spec);
    }
}

#[test]
fn the_hash_follows_what_shapes_the_pods() {
    let base = hash(&md("bert").build());
    let changed = [
        md("bert")
            .with_image("registry.example.com/kandle-runtime:0.2.0")
            .build(),
        md("bert").with_version("v2").build(),
        md("bert").with_dtype(Dtype::F16).build(),
        md("bert").with_gpu(1, None).build(),
        md("bert").with_env("RUST_LOG", "debug").build(),
        md("bert").with_args(&["--truncate"]).build(),
        md("bert").with_node_selector("zone", "a").build(),
        md("bert").from_pvc("weights", None).build(),
        md("bert").with_requests("1", "2Gi").build(),
    ];
    for other in changed {
        assert_ne!(hash(&other), base, "{:?}", other.spec);
    }
}

#[test]
fn the_operators_default_image_is_part_of_the_revision() {
    let bert = md("bert").build();
    let newer = OperatorConfig {
        runtime_image: "ghcr.io/kandle-dev/kandle-runtime:0.2.0".into(),
        ..config()
    };
    assert_ne!(
        RevisionSnapshot::of(&bert, &config()).hash(),
        RevisionSnapshot::of(&bert, &newer).hash()
    );
    let explicit = md("bert").with_image(&config().runtime_image).build();
    assert_eq!(
        hash(&explicit),
        hash(&bert),
        "the default image and the same image spelled out are one revision"
    );
}

#[test]
fn the_controller_revision_records_the_snapshot_and_the_hash_label() {
    let md = md("bert").with_version("v3").build();
    let plan = plan_at(&md, &Observed::default(), 0);
    let revision = &plan.revisions[0];
    assert_eq!(revision.name_any(), revision_of(&md));
    assert_eq!(revision.revision, 1);
    assert_eq!(
        revision.labels().get(kandle_crds::labels::REVISION),
        Some(&hash(&md))
    );
    let data = revision.data.as_ref().expect("data").0.clone();
    let snapshot: RevisionSnapshot =
        serde_json::from_value(data).expect("the data is the snapshot");
    assert_eq!(snapshot, RevisionSnapshot::of(&md, &config()));
}
