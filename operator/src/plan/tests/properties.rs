use proptest::prelude::*;

use kandle_crds::Dtype;

use super::*;
use crate::testing::{md, observed, starting_from};

prop_compose! {
    fn any_md()(
        replicas in 0..6i32,
        version in prop::sample::select(vec!["v1", "v2", "2024-06-01"]),
        gpu in prop::option::of((1..4i32, prop::option::of(prop::sample::select(vec!["NVIDIA-H100-80GB-HBM3", "NVIDIA-L4"])))),
        dtype in prop::sample::select(vec![Dtype::Auto, Dtype::F32, Dtype::F16, Dtype::Bf16]),
        history in 0..4i32,
        env in prop::option::of("[a-z]{1,8}"),
        pvc in any::<bool>(),
    ) -> ModelDeployment {
        let mut builder = md("bert").with_replicas(replicas).with_version(version).with_dtype(dtype).with_history_limit(history);
        if let Some((count, product)) = gpu {
            builder = builder.with_gpu(count, product);
        }
        if let Some(value) = env {
            builder = builder.with_env("EXTRA", &value);
        }
        if pvc {
            builder = builder.from_pvc("weights", Some("bert"));
        }
        builder.build()
    }
}

proptest! {
    #[test]
    fn planning_is_deterministic(md in any_md(), t in 0..1_000_000i64) {
        let cluster = observed().with_pvc(true).build();
        prop_assert_eq!(plan_at(&md, &cluster, t), plan_at(&md, &cluster, t));
    }

    #[test]
    // Within the default progress deadline (600 s): past it, an unavailable first revision is
    // reported once more, which the deadline tests cover.
    fn the_applied_plan_is_a_fixed_point(md in any_md(), available in any::<bool>(), later in 1..500i64) {
        let first = plan_at(&md, &observed().with_pvc(true).build(), 0);
        let md = with_status(&md, &first);
        let mut cluster = observed().with_pvc(true).from_plan(&first);
        if available {
            cluster = cluster.all_available();
        }
        let cluster = cluster.build();
        // An available revision is promoted once; after that, and without it, nothing moves.
        let (md, cluster, settled_plan) = {
            let next = plan_at(&md, &cluster, later);
            let md = with_status(&md, &next);
            let cluster = starting_from(&cluster).from_plan(&next).build();
            (md, cluster, next)
        };
        let again = plan_at(&md, &cluster, later + 60);
        prop_assert!(again.events.is_empty(), "events: {:?}", again.events);
        prop_assert!(again.delete.is_empty(), "deletes: {:?}", again.delete);
        prop_assert_eq!(&again.deployments, &settled_plan.deployments);
        prop_assert_eq!(&again.revisions, &settled_plan.revisions);
        prop_assert_eq!(&again.service, &settled_plan.service);
        prop_assert_eq!(&again.pdb, &settled_plan.pdb);
        prop_assert_eq!(&again.status, &settled_plan.status);
    }

    #[test]
    fn the_hash_ignores_labels_replicas_autoscaling_rollout_and_pause(
        md in any_md(), replicas in 0..50i32, label in "[a-z]{1,10}", paused in any::<bool>(), limit in 0..10i32,
    ) {
        let mut other = md.clone();
        other.spec.replicas = replicas;
        other.spec.paused = paused;
        other.spec.revision_history_limit = limit;
        other.spec.autoscaling = crate::testing::md("x").with_autoscaling(1, 9).build().spec.autoscaling;
        other.spec.rollout = crate::testing::md("x").with_canary(&[5, 50]).build().spec.rollout;
        other.metadata.labels = Some([("team".to_string(), label)].into());
        prop_assert_eq!(revision_of(&md), revision_of(&other));
    }

    #[test]
    fn a_sequence_of_specs_settles_on_one_serving_revision_within_the_history_limit(
        versions in prop::collection::vec(prop::sample::select(vec!["v1", "v2", "v3", "v4"]), 1..8),
        limit in 0..3i32,
    ) {
        let mut md_now = md("bert").with_replicas(2).with_history_limit(limit).with_version(versions[0]).build();
        let mut cluster = Observed::default();
        for (i, version) in versions.iter().enumerate() {
            let next = respec(&md_now, &md("bert").with_replicas(2).with_history_limit(limit).with_version(version).build());
            let (settled_md, settled_cluster) = settled(&next, &cluster, 100 * i as i64);
            md_now = settled_md;
            cluster = settled_cluster;
            let serving: Vec<String> = cluster.deployments.iter()
                .filter(|d| d.spec.as_ref().and_then(|s| s.replicas) != Some(0))
                .map(|d| d.name_any())
                .collect();
            prop_assert_eq!(serving, vec![revision_of(&md_now)]);
            prop_assert!(cluster.revisions.len() <= limit as usize + 1);
            let mut numbers: Vec<i64> = cluster.revisions.iter().map(|r| r.revision).collect();
            numbers.sort();
            numbers.dedup();
            prop_assert_eq!(numbers.len(), cluster.revisions.len(), "revision numbers are unique");
            let newest = cluster.revisions.iter().max_by_key(|r| r.revision).map(|r| r.name_any());
            prop_assert_eq!(newest, Some(revision_of(&md_now)), "the serving revision is the newest");
        }
    }
}
