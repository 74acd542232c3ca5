use k8s_openapi::api::core::v1::{Container, EnvVar, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kandle_crds::{labels, SecretKeyRef, Task};

use super::*;
use crate::plan::{FETCH_CONTAINER, GPU_PRODUCT_LABEL, MODEL_DIR, MODEL_VOLUME};
use crate::testing::{label_map, md};

fn target(md: &ModelDeployment) -> Deployment {
    let plan = plan_at(md, &Observed::default(), 0);
    deployment(&plan, &revision_of(md)).clone()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[test]
fn a_gpu_request_sets_limits_toleration_node_selector_and_device() {
    let md = md("bert")
        .with_gpu(2, Some("NVIDIA-H100-80GB-HBM3"))
        .build();
    let deployment = target(&md);
    let container = runtime_container(&deployment);
    let resources = container.resources.as_ref().expect("resources");
    let two = Some(&Quantity("2".into()));
    assert_eq!(
        resources
            .limits
            .as_ref()
            .and_then(|l| l.get("nvidia.com/gpu")),
        two
    );
    assert_eq!(
        resources
            .requests
            .as_ref()
            .and_then(|r| r.get("nvidia.com/gpu")),
        two
    );

    let pod = pod_spec(&deployment);
    let toleration = Toleration {
        key: Some("nvidia.com/gpu".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    };
    assert!(pod
        .tolerations
        .as_ref()
        .expect("tolerations")
        .contains(&toleration));
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|s| s.get(GPU_PRODUCT_LABEL))
            .map(String::as_str),
        Some("NVIDIA-H100-80GB-HBM3")
    );
    assert_eq!(
        flag(container.args.as_ref().expect("args"), "--device"),
        Some("auto")
    );
}

#[test]
fn a_cpu_model_runs_on_the_cpu_without_gpu_scheduling() {
    let deployment = target(&md("bert").build());
    let pod = pod_spec(&deployment);
    assert_eq!(pod.tolerations, None);
    assert_eq!(pod.node_selector, None);
    let container = runtime_container(&deployment);
    assert_eq!(
        flag(container.args.as_ref().expect("args"), "--device"),
        Some("cpu")
    );
    assert_eq!(
        container.resources.as_ref().and_then(|r| r.limits.clone()),
        None
    );
}

#[test]
fn the_runtime_gets_its_flags_then_the_users_arguments() {
    let md = md("minilm")
        .with_version("2024-06")
        .with_dtype(kandle_crds::Dtype::F16)
        .with_batching(8192, 64, 32)
        .with_max_sequence_length(256)
        .with_args(&["--truncate"])
        .with_env("RUST_LOG", "debug")
        .build();
    let deployment = target(&md);
    let container = runtime_container(&deployment);
    let args = container.args.clone().expect("args");
    assert_eq!(flag(&args, "--model-dir"), Some(MODEL_DIR));
    assert_eq!(flag(&args, "--served-name"), Some("minilm"));
    assert_eq!(flag(&args, "--model-version"), Some("2024-06"));
    assert_eq!(flag(&args, "--port"), Some("8080"));
    assert_eq!(flag(&args, "--dtype"), Some("f16"));
    assert_eq!(flag(&args, "--max-batch-tokens"), Some("8192"));
    assert_eq!(flag(&args, "--max-concurrent-requests"), Some("64"));
    assert_eq!(flag(&args, "--max-client-batch-size"), Some("32"));
    assert_eq!(flag(&args, "--max-input-tokens"), Some("256"));
    assert_eq!(flag(&args, "--drain-timeout"), Some("20s"));
    assert_eq!(args.last().map(String::as_str), Some("--truncate"));
    assert_eq!(
        container.image.as_deref(),
        Some(crate::config::DEFAULT_RUNTIME_IMAGE)
    );
    let env = container.env.as_ref().expect("env");
    assert_eq!(
        (env[0].name.as_str(), env[0].value.as_deref()),
        ("RUST_LOG", Some("debug"))
    );
}

#[test]
fn a_generation_model_starts_the_runtime_in_generation_mode() {
    let md = md("smollm2")
        .with_task(Task::Generation)
        .with_max_sequence_length(2048)
        .build();
    let args = runtime_container(&target(&md)).args.clone().expect("args");
    assert_eq!(flag(&args, "--task"), Some("generation"));
    assert_eq!(args.iter().filter(|a| *a == "--task").count(), 1);
    assert_eq!(
        flag(&args, "--max-input-tokens"),
        Some("2048"),
        "the context limit"
    );
}

#[test]
fn an_embedding_model_passes_no_task_and_keeps_its_pods_as_they_were() {
    let embedding = md("bert").build();
    let args = runtime_container(&target(&embedding))
        .args
        .clone()
        .expect("args");
    assert!(!args.iter().any(|a| a == "--task"), "{args:?}");
    assert_eq!(
        args,
        [
            "--model-dir",
            MODEL_DIR,
            "--served-name",
            "bert",
            "--model-version",
            "v1",
            "--port",
            "8080",
            "--dtype",
            "auto",
            "--device",
            "cpu",
            "--drain-timeout",
            "20s"
        ]
    );
    let generation = md("bert").with_task(Task::Generation).build();
    assert_ne!(
        revision_of(&embedding),
        revision_of(&generation),
        "the task is part of the revision"
    );
}

#[test]
fn a_user_argument_picks_one_gguf_file_among_several() {
    let md = md("llama")
        .with_task(Task::Generation)
        .from_pvc("models", Some("llama-gguf"))
        .with_args(&["--model-file", "llama.Q4_K_M.gguf"])
        .build();
    let args = runtime_container(&target(&md)).args.clone().expect("args");
    assert_eq!(flag(&args, "--model-file"), Some("llama.Q4_K_M.gguf"));
    assert_eq!(flag(&args, "--task"), Some("generation"));
}

#[test]
fn unset_limits_add_no_flags() {
    let args = runtime_container(&target(&md("bert").unversioned().build()))
        .args
        .clone()
        .expect("args");
    for absent in [
        "--model-version",
        "--max-batch-tokens",
        "--max-concurrent-requests",
        "--max-client-batch-size",
        "--max-input-tokens",
    ] {
        assert!(!args.iter().any(|a| a == absent), "{absent} in {args:?}");
    }
}

#[test]
fn a_pvc_source_is_mounted_read_only_with_its_sub_path() {
    let deployment = target(&md("bert").from_pvc("weights", Some("bert/v1")).build());
    let pod = pod_spec(&deployment);
    let volume = pod
        .volumes
        .as_ref()
        .expect("volumes")
        .iter()
        .find(|v| v.name == MODEL_VOLUME)
        .expect("model volume");
    let pvc = volume
        .persistent_volume_claim
        .as_ref()
        .expect("a pvc volume");
    assert_eq!(
        (pvc.claim_name.as_str(), pvc.read_only),
        ("weights", Some(true))
    );
    let mount = runtime_container(&deployment)
        .volume_mounts
        .as_ref()
        .expect("mounts")[0]
        .clone();
    assert_eq!(
        (
            mount.mount_path.as_str(),
            mount.sub_path.as_deref(),
            mount.read_only
        ),
        (MODEL_DIR, Some("bert/v1"), Some(true))
    );
}

#[test]
fn a_host_path_must_be_an_existing_directory() {
    let deployment = target(&md("bert").from_host_path("/var/lib/models/bert").build());
    let volume = pod_spec(&deployment).volumes.as_ref().expect("volumes")[0].clone();
    let host = volume.host_path.expect("a hostPath volume");
    assert_eq!(
        (host.path.as_str(), host.type_.as_deref()),
        ("/var/lib/models/bert", Some("Directory"))
    );
}

#[test]
fn an_image_source_is_an_image_volume() {
    let deployment = target(
        &md("bert")
            .from_image("registry.example.com/models/bert:v1")
            .build(),
    );
    let volume = pod_spec(&deployment).volumes.as_ref().expect("volumes")[0].clone();
    assert_eq!(
        volume.image.expect("an image volume").reference.as_deref(),
        Some("registry.example.com/models/bert:v1")
    );
}

/// The fetch init container of a deployment: the runtime image's own fetcher, writing the
/// model volume, which is an emptyDir.
fn fetch_container(deployment: &Deployment) -> Container {
    let pod = pod_spec(deployment);
    let init = pod.init_containers.as_ref().expect("an init container")[0].clone();
    assert_eq!(init.name, FETCH_CONTAINER);
    assert_eq!(init.image, runtime_container(deployment).image);
    assert_eq!(init.command, None, "the image's entrypoint, kandle-runtime");
    assert_eq!(
        init.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let volume = pod.volumes.as_ref().expect("volumes");
    let model = volume
        .iter()
        .find(|v| v.name == MODEL_VOLUME)
        .expect("model");
    assert!(model.empty_dir.is_some());
    init
}

fn secret_ref(env: &EnvVar) -> (&str, &str, Option<bool>) {
    let r = env
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("a secretKeyRef");
    (r.name.as_str(), r.key.as_str(), r.optional)
}

#[test]
fn an_http_source_is_downloaded_and_checked_by_the_runtimes_fetcher() {
    let sha = "a".repeat(64);
    let url = "https://models.example.com/bert.tar.gz?sig=x";
    let deployment = target(&md("bert").from_http(url, &sha).build());
    let init = fetch_container(&deployment);
    assert_eq!(
        init.args.expect("args"),
        ["fetch", "http", "--url", url, "--sha256", &sha, "--dest", MODEL_DIR]
    );
}

#[test]
fn a_single_gguf_file_over_http_is_fetched_like_an_archive() {
    let sha = "b".repeat(64);
    let url = "https://models.example.com/SmolLM2-135M-Instruct.Q4_1.gguf";
    let md = md("smollm2")
        .with_task(Task::Generation)
        .from_http(url, &sha)
        .build();
    let init = fetch_container(&target(&md));
    assert_eq!(
        init.args.expect("args"),
        ["fetch", "http", "--url", url, "--sha256", &sha, "--dest", MODEL_DIR]
    );
}

#[test]
fn a_hub_source_is_fetched_at_its_commit_with_the_token_from_its_secret() {
    let commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";
    let mut spec = md("minilm")
        .from_hub("sentence-transformers/all-MiniLM-L6-v2", commit, None)
        .build();
    let hf = spec.spec.model.source.hugging_face.as_mut().unwrap();
    hf.files = vec!["*.json".into(), "model.safetensors".into()];
    hf.token_secret_ref = Some(SecretKeyRef {
        name: "hf".into(),
        key: "token".into(),
    });
    let init = fetch_container(&target(&spec));
    assert_eq!(
        init.args.expect("args"),
        [
            "fetch",
            "hf",
            "--repo",
            "sentence-transformers/all-MiniLM-L6-v2",
            "--revision",
            commit,
            "--endpoint",
            "https://huggingface.co",
            "--file",
            "*.json",
            "--file",
            "model.safetensors",
            "--dest",
            MODEL_DIR
        ]
    );
    let env = init.env.expect("env");
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, "HF_TOKEN");
    assert_eq!(secret_ref(&env[0]), ("hf", "token", None));
}

#[test]
fn an_s3_source_gets_its_credentials_from_its_secret_or_the_pods_identity() {
    let mut spec = md("minilm").build();
    spec.spec.model.source = serde_json::from_value(serde_json::json!({"s3": {
        "bucket": "models", "prefix": "minilm/", "endpoint": "http://minio.storage:9000",
        "region": "eu-west-1", "credentialsSecretRef": {"name": "s3"}
    }}))
    .expect("an s3 source");
    let init = fetch_container(&target(&spec));
    assert_eq!(
        init.args.expect("args").join(" "),
        format!(
            "fetch s3 --bucket models --prefix minilm/ --endpoint http://minio.storage:9000 \
             --region eu-west-1 --dest {MODEL_DIR}"
        )
    );
    let env = init.env.expect("env");
    let refs: Vec<_> = env
        .iter()
        .map(|e| (e.name.as_str(), secret_ref(e)))
        .collect();
    assert_eq!(
        refs,
        [
            ("AWS_ACCESS_KEY_ID", ("s3", "AWS_ACCESS_KEY_ID", None)),
            (
                "AWS_SECRET_ACCESS_KEY",
                ("s3", "AWS_SECRET_ACCESS_KEY", None)
            ),
            ("AWS_SESSION_TOKEN", ("s3", "AWS_SESSION_TOKEN", Some(true))),
        ]
    );

    spec.spec
        .model
        .source
        .s3
        .as_mut()
        .unwrap()
        .credentials_secret_ref = None;
    let init = fetch_container(&target(&spec));
    assert_eq!(
        init.env, None,
        "the pod's own identity (IRSA, Pod Identity)"
    );
}

#[test]
fn pods_drain_before_they_stop_and_run_restricted() {
    let deployment = target(&md("bert").build());
    let pod = pod_spec(&deployment);
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    let container = runtime_container(&deployment);
    let pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .expect("preStop");
    assert_eq!(pre_stop.sleep.as_ref().map(|s| s.seconds), Some(5));
    let security = container
        .security_context
        .as_ref()
        .expect("security context");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        security.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    assert_eq!(
        security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
}

#[test]
fn probes_tolerate_long_model_loads() {
    let deployment = target(&md("bert").build());
    let container = runtime_container(&deployment);
    let startup = container.startup_probe.as_ref().expect("startup probe");
    let budget = startup.period_seconds.unwrap_or(10) * startup.failure_threshold.unwrap_or(3);
    assert!(budget >= 600, "startup allows {budget}s");
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&container.startup_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&container.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&container.liveness_probe).as_deref(), Some("/healthz"));
    let port = &container.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.container_port, port.name.as_deref()),
        (8080, Some("http"))
    );
    let probe_port = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .map(|h| h.port.clone());
    assert_eq!(probe_port, Some(IntOrString::String("http".into())));
}

#[test]
fn the_users_scheduling_is_merged_with_the_gpu_scheduling() {
    let theirs = Toleration {
        key: Some("dedicated".into()),
        operator: Some("Equal".into()),
        value: Some("ml".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    };
    let md = md("bert")
        .with_gpu(1, Some("NVIDIA-L4"))
        .with_node_selector("topology.kubernetes.io/zone", "europe-west4-a")
        .with_toleration(theirs.clone())
        .with_priority_class("inference")
        .build();
    let deployment = target(&md);
    let pod = pod_spec(&deployment);
    let selector = pod.node_selector.clone().expect("node selector");
    assert_eq!(
        selector,
        label_map(&[
            (GPU_PRODUCT_LABEL, "NVIDIA-L4"),
            ("topology.kubernetes.io/zone", "europe-west4-a")
        ])
    );
    let tolerations = pod.tolerations.clone().expect("tolerations");
    assert_eq!(tolerations.len(), 2);
    assert!(tolerations.contains(&theirs));
    assert_eq!(pod.priority_class_name.as_deref(), Some("inference"));
}

#[test]
fn pods_carry_every_label_and_the_scrape_annotations() {
    let md = md("bert").build();
    let deployment = target(&md);
    let hash = RevisionSnapshot::of(&md, &config()).hash();
    let template = deployment
        .spec
        .as_ref()
        .expect("spec")
        .template
        .metadata
        .clone()
        .expect("template metadata");
    let expected = label_map(&[
        (labels::APP_NAME, labels::APP_NAME_VALUE),
        (labels::APP_INSTANCE, "bert"),
        (labels::MANAGED_BY, labels::MANAGED_BY_VALUE),
        (labels::MODEL_DEPLOYMENT, "bert"),
        (labels::REVISION, &hash),
    ]);
    assert_eq!(template.labels.as_ref(), Some(&expected));
    assert_eq!(deployment.metadata.labels.as_ref(), Some(&expected));
    let annotations = template.annotations.expect("annotations");
    assert_eq!(
        annotations.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations.get("prometheus.io/port").map(String::as_str),
        Some("8080")
    );
}

#[test]
fn every_child_is_controlled_by_the_model_deployment() {
    let md = md("bert").with_replicas(3).build();
    let plan = plan_at(&md, &Observed::default(), 0);
    let mut owners = Vec::new();
    owners.extend(
        plan.deployments
            .iter()
            .map(|d| d.metadata.owner_references.clone()),
    );
    owners.extend(
        plan.revisions
            .iter()
            .map(|r| r.metadata.owner_references.clone()),
    );
    owners.push(
        plan.service
            .as_ref()
            .expect("service")
            .metadata
            .owner_references
            .clone(),
    );
    owners.push(
        plan.pdb
            .as_ref()
            .expect("pdb")
            .metadata
            .owner_references
            .clone(),
    );
    for owner in owners {
        let owner = owner.expect("owner references")[0].clone();
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("ModelDeployment", "bert", "uid-bert")
        );
        assert_eq!(
            (owner.controller, owner.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(owner.api_version, "kandle.dev/v1alpha1");
    }
}
