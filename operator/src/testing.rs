//! Builders for tests that read like sentences: a `ModelDeployment` (`md("bert").with_gpu(1,
//! Some("NVIDIA-H100-80GB-HBM3")).build()`) and the cluster state a plan is made from
//! (`observed().from_plan(&plan).all_available().build()`). Shared with the integration tests
//! through the `test-support` feature.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{EnvVar, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kandle_crds::{
    AutoscalingSpec, CanaryStep, Dtype, GpuSpec, HostPathSource, HttpSource, HuggingFaceSource,
    ImageSource, ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus, ModelSource,
    ModelSpec, PvcSource, ResourceAmounts, RolloutStrategy, Task,
};
use kube::ResourceExt;

use crate::observe::{Observed, PodProblem, ProblemKind, SchedulingFailure};
use crate::plan::{revision_name, Plan};

/// Namespace of test resources unless told otherwise.
pub const TEST_NAMESPACE: &str = "models";

/// Starts a `ModelDeployment` named `name`: one replica of model `name` on CPU, from an OCI
/// image of the weights, in [`TEST_NAMESPACE`], generation 1.
pub fn md(name: &str) -> MdBuilder {
    let spec = ModelDeploymentSpec {
        model: ModelSpec {
            name: name.to_string(),
            version: Some("v1".to_string()),
            task: Task::Embedding,
            source: ModelSource {
                image: Some(ImageSource {
                    reference: format!("registry.example.com/models/{name}:v1"),
                    pull_policy: None,
                }),
                ..Default::default()
            },
            dtype: Dtype::Auto,
            max_sequence_length: None,
        },
        runtime: Default::default(),
        resources: Default::default(),
        scheduling: Default::default(),
        replicas: 1,
        autoscaling: None,
        rollout: Default::default(),
        revision_history_limit: 5,
        paused: false,
    };
    let mut md = ModelDeployment::new(name, spec);
    md.metadata.namespace = Some(TEST_NAMESPACE.to_string());
    md.metadata.uid = Some(format!("uid-{name}"));
    md.metadata.generation = Some(1);
    MdBuilder { md }
}

/// Builds a `ModelDeployment` step by step.
#[derive(Clone, Debug)]
pub struct MdBuilder {
    md: ModelDeployment,
}

impl MdBuilder {
    /// Places it in `namespace`.
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.md.metadata.namespace = Some(namespace.to_string());
        self
    }
    /// Sets `metadata.uid`.
    pub fn with_uid(mut self, uid: &str) -> Self {
        self.md.metadata.uid = Some(uid.to_string());
        self
    }
    /// Sets `metadata.generation`.
    pub fn with_generation(mut self, generation: i64) -> Self {
        self.md.metadata.generation = Some(generation);
        self
    }
    /// Adds a metadata label.
    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.md
            .labels_mut()
            .insert(key.to_string(), value.to_string());
        self
    }
    /// Sets `spec.replicas`.
    pub fn with_replicas(mut self, replicas: i32) -> Self {
        self.md.spec.replicas = replicas;
        self
    }
    /// Sets `spec.model.version`.
    pub fn with_version(mut self, version: &str) -> Self {
        self.md.spec.model.version = Some(version.to_string());
        self
    }
    /// Clears `spec.model.version`.
    pub fn unversioned(mut self) -> Self {
        self.md.spec.model.version = None;
        self
    }
    /// Sets `spec.model.task`.
    pub fn with_task(mut self, task: Task) -> Self {
        self.md.spec.model.task = task;
        self
    }
    /// Sets `spec.model.dtype`.
    pub fn with_dtype(mut self, dtype: Dtype) -> Self {
        self.md.spec.model.dtype = dtype;
        self
    }
    /// Sets `spec.model.maxSequenceLength`.
    pub fn with_max_sequence_length(mut self, tokens: i32) -> Self {
        self.md.spec.model.max_sequence_length = Some(tokens);
        self
    }
    /// Requests `count` GPUs per replica, optionally of one product.
    pub fn with_gpu(mut self, count: i32, product: Option<&str>) -> Self {
        self.md.spec.resources.gpu = Some(GpuSpec {
            count,
            resource_name: "nvidia.com/gpu".to_string(),
            product: product.map(str::to_string),
        });
        self
    }
    /// Sets CPU and memory requests.
    pub fn with_requests(mut self, cpu: &str, memory: &str) -> Self {
        self.md.spec.resources.requests = Some(ResourceAmounts {
            cpu: Some(Quantity(cpu.to_string())),
            memory: Some(Quantity(memory.to_string())),
        });
        self
    }
    /// Sets `spec.runtime.image`.
    pub fn with_image(mut self, image: &str) -> Self {
        self.md.spec.runtime.image = Some(image.to_string());
        self
    }
    /// Sets the runtime's batching limits.
    pub fn with_batching(
        mut self,
        max_batch_tokens: i32,
        max_concurrent: i32,
        max_client_batch: i32,
    ) -> Self {
        self.md.spec.runtime.max_batch_tokens = Some(max_batch_tokens);
        self.md.spec.runtime.max_concurrent_requests = Some(max_concurrent);
        self.md.spec.runtime.max_client_batch_size = Some(max_client_batch);
        self
    }
    /// Adds an environment variable to the runtime.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.md.spec.runtime.env.push(EnvVar {
            name: name.to_string(),
            value: Some(value.to_string()),
            ..Default::default()
        });
        self
    }
    /// Adds extra runtime arguments.
    pub fn with_args(mut self, args: &[&str]) -> Self {
        self.md
            .spec
            .runtime
            .args
            .extend(args.iter().map(|a| a.to_string()));
        self
    }
    /// Loads the model from PVC `claim`, optionally from a folder inside it.
    pub fn from_pvc(mut self, claim: &str, sub_path: Option<&str>) -> Self {
        self.md.spec.model.source = ModelSource {
            pvc: Some(PvcSource {
                claim_name: claim.to_string(),
                sub_path: sub_path.map(str::to_string),
            }),
            ..Default::default()
        };
        self
    }
    /// Loads the model from an OCI image.
    pub fn from_image(mut self, reference: &str) -> Self {
        self.md.spec.model.source = ModelSource {
            image: Some(ImageSource {
                reference: reference.to_string(),
                pull_policy: None,
            }),
            ..Default::default()
        };
        self
    }
    /// Mounts the model from the node folder `path`.
    pub fn from_host_path(mut self, path: &str) -> Self {
        self.md.spec.model.source = ModelSource {
            host_path: Some(HostPathSource {
                path: path.to_string(),
            }),
            ..Default::default()
        };
        self
    }
    /// Rolls out with this surge and unavailability budget.
    pub fn with_budget(mut self, max_surge: i32, max_unavailable: i32) -> Self {
        use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
        self.md.spec.rollout.max_surge = IntOrString::Int(max_surge);
        self.md.spec.rollout.max_unavailable = IntOrString::Int(max_unavailable);
        self
    }
    /// Downloads the model archive from `url`, checked against `sha256`.
    pub fn from_http(mut self, url: &str, sha256: &str) -> Self {
        self.md.spec.model.source = ModelSource {
            http: Some(HttpSource {
                url: url.to_string(),
                sha256: sha256.to_string(),
            }),
            ..Default::default()
        };
        self
    }
    /// Serves `repo` at `revision` from the Hugging Face Hub at `endpoint` (`None`: the Hub).
    pub fn from_hub(mut self, repo: &str, revision: &str, endpoint: Option<&str>) -> Self {
        self.md.spec.model.source = ModelSource {
            hugging_face: Some(HuggingFaceSource {
                repo: repo.to_string(),
                revision: revision.to_string(),
                files: Vec::new(),
                token_secret_ref: None,
                endpoint: endpoint.map(str::to_string),
            }),
            ..Default::default()
        };
        self
    }
    /// Adds a node selector entry.
    pub fn with_node_selector(mut self, key: &str, value: &str) -> Self {
        self.md
            .spec
            .scheduling
            .node_selector
            .insert(key.to_string(), value.to_string());
        self
    }
    /// Adds a toleration.
    pub fn with_toleration(mut self, toleration: Toleration) -> Self {
        self.md.spec.scheduling.tolerations.push(toleration);
        self
    }
    /// Sets the PriorityClass.
    pub fn with_priority_class(mut self, class: &str) -> Self {
        self.md.spec.scheduling.priority_class_name = Some(class.to_string());
        self
    }
    /// Sets autoscaling bounds.
    pub fn with_autoscaling(mut self, min: i32, max: i32) -> Self {
        self.md.spec.autoscaling = Some(AutoscalingSpec {
            min_replicas: min,
            max_replicas: max,
            metric: Default::default(),
            target: 8.0,
            scale_up_stabilization: "0s".to_string(),
            scale_down_stabilization: "5m".to_string(),
        });
        self
    }
    /// Switches to the canary strategy with the given step weights.
    pub fn with_canary(mut self, weights: &[i32]) -> Self {
        self.md.spec.rollout.strategy = RolloutStrategy::Canary;
        self.md.spec.rollout.steps = weights
            .iter()
            .map(|&weight| CanaryStep {
                weight,
                pause: None,
            })
            .collect();
        self
    }
    /// A canary rollout with these `(weight, pause)` steps.
    pub fn with_steps(mut self, steps: &[(i32, Option<&str>)]) -> Self {
        self.md.spec.rollout.strategy = RolloutStrategy::Canary;
        self.md.spec.rollout.steps = steps
            .iter()
            .map(|&(weight, pause)| CanaryStep {
                weight,
                pause: pause.map(str::to_string),
            })
            .collect();
        self
    }
    /// Sets `spec.rollout.analysis`.
    pub fn with_analysis(mut self, analysis: kandle_crds::AnalysisSpec) -> Self {
        self.md.spec.rollout.analysis = Some(analysis);
        self
    }
    /// Splits traffic with an HTTPRoute attached to the Gateway `gateway`.
    pub fn with_http_route(mut self, gateway: &str) -> Self {
        self.md.spec.rollout.traffic_routing = Some(kandle_crds::TrafficRouting {
            http_route: Some(kandle_crds::HttpRouteRouting {
                parent_refs: vec![kandle_crds::GatewayParentRef {
                    name: gateway.to_string(),
                    namespace: None,
                    section_name: None,
                }],
                hostnames: Vec::new(),
            }),
        });
        self
    }
    /// Sets an annotation.
    pub fn with_annotation(mut self, key: &str, value: &str) -> Self {
        self.md
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value.to_string());
        self
    }
    /// Sets `spec.revisionHistoryLimit`.
    pub fn with_history_limit(mut self, limit: i32) -> Self {
        self.md.spec.revision_history_limit = limit;
        self
    }
    /// Sets `spec.paused`.
    pub fn paused(mut self) -> Self {
        self.md.spec.paused = true;
        self
    }
    /// Sets the status (for example the previous plan's).
    pub fn with_status(mut self, status: ModelDeploymentStatus) -> Self {
        self.md.status = Some(status);
        self
    }
    /// The resource.
    pub fn build(self) -> ModelDeployment {
        self.md
    }
}

/// Starts an empty observed state: no children, no pods.
pub fn observed() -> ObservedBuilder {
    ObservedBuilder {
        observed: Observed::default(),
    }
}

/// Continues from an observed state (for example the previous pass's).
pub fn starting_from(observed: &Observed) -> ObservedBuilder {
    ObservedBuilder {
        observed: observed.clone(),
    }
}

/// Builds an [`Observed`] step by step.
#[derive(Clone, Debug)]
pub struct ObservedBuilder {
    observed: Observed,
}

impl ObservedBuilder {
    /// The children `plan` applies, as the API server would then hold them (no Deployment
    /// status yet), with `plan`'s deletions carried out. Children the plan leaves alone stay.
    pub fn from_plan(mut self, plan: &Plan) -> Self {
        let o = &mut self.observed;
        for deployment in &plan.deployments {
            let previous = o
                .deployments
                .iter()
                .position(|d| d.name_any() == deployment.name_any());
            let mut applied = deployment.clone();
            if let Some(index) = previous {
                applied.status = o.deployments[index].status.clone();
                o.deployments.remove(index);
            }
            o.deployments.push(applied);
        }
        for revision in &plan.revisions {
            o.revisions.retain(|r| r.name_any() != revision.name_any());
            o.revisions.push(revision.clone());
        }
        if plan.service.is_some() {
            o.service = plan.service.clone();
        }
        if plan.pdb.is_some() {
            o.pdb = plan.pdb.clone();
        }
        if plan.hpa.is_some() {
            o.hpa = plan.hpa.clone();
        }
        for service in &plan.revision_services {
            o.revision_services
                .retain(|s| s.name_any() != service.name_any());
            o.revision_services.push(service.clone());
        }
        if plan.route.is_some() {
            o.route = plan.route.clone();
        }
        for gone in &plan.delete {
            use crate::plan::ChildKind;
            match gone.kind {
                ChildKind::Deployment => o.deployments.retain(|d| d.name_any() != gone.name),
                ChildKind::ControllerRevision => o.revisions.retain(|r| r.name_any() != gone.name),
                ChildKind::Service
                    if o.service
                        .as_ref()
                        .is_some_and(|s| s.name_any() == gone.name) =>
                {
                    o.service = None
                }
                ChildKind::Service => o.revision_services.retain(|s| s.name_any() != gone.name),
                ChildKind::HttpRoute => o.route = None,
                ChildKind::PodDisruptionBudget => o.pdb = None,
                ChildKind::HorizontalPodAutoscaler => o.hpa = None,
            }
        }
        o.deployments.sort_by_key(|d| d.name_any());
        o.revisions.sort_by_key(|r| r.name_any());
        o.revision_services.sort_by_key(|s| s.name_any());
        self
    }
    /// Adds a Deployment as observed.
    pub fn with_deployment(mut self, deployment: Deployment) -> Self {
        self.observed.deployments.push(deployment);
        self.observed.deployments.sort_by_key(|d| d.name_any());
        self
    }
    /// Every Deployment has all of its desired pods ready and available.
    pub fn all_available(mut self) -> Self {
        for deployment in &mut self.observed.deployments {
            make_available(deployment);
        }
        self
    }
    /// The named Deployment has all of its desired pods ready and available.
    pub fn available(mut self, name: &str) -> Self {
        for deployment in self
            .observed
            .deployments
            .iter_mut()
            .filter(|d| d.name_any() == name)
        {
            make_available(deployment);
        }
        self
    }
    /// The named Deployment has pods, `ready` of them ready and available.
    pub fn partly_ready(mut self, name: &str, ready: i32) -> Self {
        for deployment in self
            .observed
            .deployments
            .iter_mut()
            .filter(|d| d.name_any() == name)
        {
            let replicas = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            deployment.status = Some(DeploymentStatus {
                observed_generation: deployment.metadata.generation.or(Some(1)),
                replicas: Some(replicas),
                updated_replicas: Some(replicas),
                ready_replicas: Some(ready),
                available_replicas: Some(ready),
                ..Default::default()
            });
        }
        self
    }
    /// Whether the model source's PVC exists.
    pub fn with_pvc(mut self, exists: bool) -> Self {
        self.observed.pvc_exists = Some(exists);
        self
    }
    /// A pod of revision `hash` of `md_name` that the scheduler could not place.
    pub fn unschedulable(mut self, md_name: &str, hash: &str, message: &str) -> Self {
        let pod = format!(
            "{}-{}",
            revision_name(md_name, hash),
            self.observed.unschedulable.len()
        );
        self.observed.unschedulable.push(SchedulingFailure {
            pod,
            revision: Some(hash.to_string()),
            message: message.to_string(),
            since: None,
        });
        self
    }
    /// Like [`ObservedBuilder::unschedulable`], with the time the scheduler first said so.
    pub fn unschedulable_since(
        mut self,
        md_name: &str,
        hash: &str,
        message: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        self = self.unschedulable(md_name, hash, message);
        if let Some(last) = self.observed.unschedulable.last_mut() {
            last.since = Some(crate::plan::kube_time(since));
        }
        self
    }
    /// A pod of revision `hash` of `md_name` with a failing `container`.
    pub fn failing(mut self, md_name: &str, hash: &str, kind: ProblemKind, message: &str) -> Self {
        let pod = format!(
            "{}-p{}",
            revision_name(md_name, hash),
            self.observed.pod_problems.len()
        );
        self.observed.pod_problems.push(PodProblem {
            pod,
            revision: Some(hash.to_string()),
            kind,
            container: match kind {
                ProblemKind::InitFailed => crate::plan::FETCH_CONTAINER.to_string(),
                _ => crate::plan::RUNTIME_CONTAINER.to_string(),
            },
            message: message.to_string(),
            restarts: 3,
        });
        self
    }
    /// The observed state.
    pub fn build(self) -> Observed {
        self.observed
    }
}

fn make_available(deployment: &mut Deployment) {
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    deployment.status = Some(DeploymentStatus {
        observed_generation: deployment.metadata.generation.or(Some(1)),
        replicas: Some(replicas),
        updated_replicas: Some(replicas),
        ready_replicas: Some(replicas),
        available_replicas: Some(replicas),
        ..Default::default()
    });
}

/// Labels of a `ModelDeployment`'s pods by key, for assertions.
pub fn label_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
