//! The pod template of a revision: the kandle-runtime container with its flags, resources,
//! probes and drain behaviour, the model volume, GPU scheduling and a restricted security
//! context. Built from a [`RevisionSnapshot`], so an old revision's pods can be described again.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, Lifecycle,
    LifecycleHandler, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecurityContext, SleepAction, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kandle_crds::{Dtype, ResourceAmounts, Task};

use super::meta;
use super::model_volume::{model_volume, MODEL_DIR};
use super::revision::RevisionSnapshot;
use crate::config::OperatorConfig;

/// Name of the runtime container.
pub const RUNTIME_CONTAINER: &str = "kandle-runtime";
/// Port the runtime listens on.
pub const RUNTIME_PORT: i32 = 8080;
/// Name of the runtime's port (the Service targets it by name).
pub const PORT_NAME: &str = "http";
/// How long the runtime drains in-flight requests after SIGTERM.
pub const DRAIN_TIMEOUT: &str = "20s";
/// Grace period of the pods: longer than the preStop sleep plus the drain timeout.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;
/// The preStop sleep, giving endpoints time to drop the pod before it stops accepting.
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// The non-root user the pods run as (distroless `nonroot`).
pub const RUN_AS_USER: i64 = 65532;
/// Node label carrying the GPU product (NVIDIA GPU feature discovery).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// Startup probe period; with [`STARTUP_FAILURE_THRESHOLD`] it tolerates 10 minutes of loading.
const STARTUP_PERIOD_SECONDS: i32 = 5;
const STARTUP_FAILURE_THRESHOLD: i32 = 120;
const READYZ: &str = "/readyz";
const HEALTHZ: &str = "/healthz";
const TMP_VOLUME: &str = "tmp";

/// The pod template of the revision described by `snapshot`.
pub fn pod_template(
    md_name: &str,
    snapshot: &RevisionSnapshot,
    config: &OperatorConfig,
) -> PodTemplateSpec {
    let hash = snapshot.hash();
    let model = model_volume(&snapshot.model.source, snapshot.image(config));
    let tmp_volume = Volume {
        name: TMP_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let tmp_mount = VolumeMount {
        name: TMP_VOLUME.to_string(),
        mount_path: "/tmp".to_string(),
        ..Default::default()
    };
    let container = Container {
        name: RUNTIME_CONTAINER.to_string(),
        image: Some(snapshot.image(config).to_string()),
        args: Some(runtime_args(snapshot)),
        env: (!snapshot.runtime.env.is_empty()).then(|| snapshot.runtime.env.clone()),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_string()),
            container_port: RUNTIME_PORT,
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]),
        resources: Some(resources(snapshot)),
        startup_probe: Some(http_probe(
            READYZ,
            STARTUP_PERIOD_SECONDS,
            STARTUP_FAILURE_THRESHOLD,
        )),
        readiness_probe: Some(http_probe(READYZ, 5, 2)),
        liveness_probe: Some(http_probe(HEALTHZ, 10, 3)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECONDS,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(restricted_security_context()),
        volume_mounts: Some(vec![model.mount.clone(), tmp_mount]),
        ..Default::default()
    };

    let scheduling = &snapshot.scheduling;
    let mut node_selector = scheduling.node_selector.clone();
    let mut tolerations = Vec::new();
    if let Some(gpu) = &snapshot.resources.gpu {
        // The product is part of the spec too; it wins over a conflicting user selector.
        if let Some(product) = &gpu.product {
            node_selector.insert(GPU_PRODUCT_LABEL.to_string(), product.clone());
        }
        tolerations.push(Toleration {
            key: Some(gpu.resource_name.clone()),
            operator: Some("Exists".to_string()),
            effect: Some("NoSchedule".to_string()),
            ..Default::default()
        });
    }
    for toleration in &scheduling.tolerations {
        if !tolerations.contains(toleration) {
            tolerations.push(toleration.clone());
        }
    }

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(meta::revision_labels(md_name, &hash)),
            annotations: Some(scrape_annotations()),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            init_containers: model.init_container.map(|c| vec![c]),
            volumes: Some(vec![model.volume, tmp_volume]),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            affinity: scheduling.affinity.clone(),
            priority_class_name: scheduling.priority_class_name.clone(),
            topology_spread_constraints: (!scheduling.topology_spread_constraints.is_empty())
                .then(|| scheduling.topology_spread_constraints.clone()),
            termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS_USER),
                run_as_group: Some(RUN_AS_USER),
                fs_group: Some(RUN_AS_USER),
                seccomp_profile: Some(runtime_default_seccomp()),
                ..Default::default()
            }),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            ..Default::default()
        }),
    }
}

/// The runtime's command-line flags: kandle's own, then `spec.runtime.args`.
pub fn runtime_args(snapshot: &RevisionSnapshot) -> Vec<String> {
    let model = &snapshot.model;
    let runtime = &snapshot.runtime;
    let mut args = vec![
        "--model-dir".to_string(),
        MODEL_DIR.to_string(),
        "--served-name".to_string(),
        model.name.clone(),
    ];
    if let Some(version) = &model.version {
        args.extend(["--model-version".to_string(), version.clone()]);
    }
    if let Some(task) = task_flag(model.task) {
        args.extend(["--task".to_string(), task.to_string()]);
    }
    let device = if snapshot.resources.gpu.is_some() {
        "auto"
    } else {
        "cpu"
    };
    args.extend([
        "--port".to_string(),
        RUNTIME_PORT.to_string(),
        "--dtype".to_string(),
        dtype_flag(model.dtype).to_string(),
        "--device".to_string(),
        device.to_string(),
    ]);
    let optional = [
        ("--max-batch-tokens", runtime.max_batch_tokens),
        ("--max-concurrent-requests", runtime.max_concurrent_requests),
        ("--max-client-batch-size", runtime.max_client_batch_size),
        ("--max-input-tokens", model.max_sequence_length),
    ];
    for (flag, value) in optional {
        if let Some(value) = value {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(["--drain-timeout".to_string(), DRAIN_TIMEOUT.to_string()]);
    args.extend(runtime.args.iter().cloned());
    args
}

/// The runtime's `--task` for `task`. Embedding passes none: the pods of embedding revisions stay
/// as they were before generation was served, and the runtime serves a folder of embedding
/// weights as embeddings. Classification is refused before any pod is planned.
fn task_flag(task: Task) -> Option<&'static str> {
    match task {
        Task::Generation => Some("generation"),
        Task::Embedding | Task::Classification => None,
    }
}

fn dtype_flag(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Auto => "auto",
        Dtype::F32 => "f32",
        Dtype::F16 => "f16",
        Dtype::Bf16 => "bf16",
    }
}

fn resources(snapshot: &RevisionSnapshot) -> ResourceRequirements {
    let spec = &snapshot.resources;
    let mut requests = amounts(spec.requests.as_ref());
    let mut limits = amounts(spec.limits.as_ref());
    if let Some(gpu) = &spec.gpu {
        let count = Quantity(gpu.count.to_string());
        requests.insert(gpu.resource_name.clone(), count.clone());
        limits.insert(gpu.resource_name.clone(), count);
    }
    ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..Default::default()
    }
}

fn amounts(amounts: Option<&ResourceAmounts>) -> BTreeMap<String, Quantity> {
    let mut map = BTreeMap::new();
    if let Some(amounts) = amounts {
        if let Some(cpu) = &amounts.cpu {
            map.insert("cpu".to_string(), cpu.clone());
        }
        if let Some(memory) = &amounts.memory {
            map.insert("memory".to_string(), memory.clone());
        }
    }
    map
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String(PORT_NAME.to_string()),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

fn scrape_annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), RUNTIME_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ])
}

fn runtime_default_seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_string(),
        ..Default::default()
    }
}

/// The restricted Pod Security Standard for a container: non-root, read-only root filesystem,
/// no privilege escalation, no capabilities, the runtime's default seccomp profile.
pub fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            ..Default::default()
        }),
        seccomp_profile: Some(runtime_default_seccomp()),
        ..Default::default()
    }
}
