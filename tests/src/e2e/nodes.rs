//! The fake Nodes the stand-in kubelet plays: a CPU node and two GPU nodes of different
//! products, as a GPU operator would label and taint them. A Node is created by apply, made
//! Ready through its status subresource, and freed of the `node.kubernetes.io/not-ready` taint
//! the API server adds to every new Node (the node lifecycle controller that would lift it is
//! off in the local control plane).

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use super::install::FIELD_MANAGER;

/// The label the stand-in kubelet selects its nodes by.
pub const E2E_NODE_LABEL: &str = "kandle.dev/e2e-node";
/// The label NVIDIA's GPU feature discovery puts the GPU model in.
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// The extended resource of NVIDIA GPUs, also the key of the GPU nodes' taint.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The GPU product of the node `e2e-gpu-h100`.
pub const H100: &str = "NVIDIA-H100-80GB-HBM3";
/// The GPU product of the node `e2e-gpu-a100`.
pub const A100: &str = "NVIDIA-A100-SXM4-80GB";

/// A node to create: its name, capacity and GPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Node name.
    pub name: String,
    /// CPU capacity, a quantity (`64`).
    pub cpu: String,
    /// Memory capacity, a quantity (`256Gi`).
    pub memory: String,
    /// `nvidia.com/gpu` capacity; a node with GPUs carries the `nvidia.com/gpu` taint.
    pub gpus: u32,
    /// The `nvidia.com/gpu.product` label.
    pub product: Option<String>,
}

impl NodeSpec {
    /// A CPU node with 64 cores and 256Gi.
    pub fn cpu(name: &str) -> Self {
        Self {
            name: name.to_string(),
            cpu: "64".to_string(),
            memory: "256Gi".to_string(),
            gpus: 0,
            product: None,
        }
    }

    /// A node like [`NodeSpec::cpu`] with `gpus` GPUs of `product`.
    pub fn gpu(name: &str, product: &str, gpus: u32) -> Self {
        Self {
            gpus,
            product: Some(product.to_string()),
            ..Self::cpu(name)
        }
    }
}

/// The nodes every test binary starts with.
pub fn default_nodes() -> Vec<NodeSpec> {
    vec![
        NodeSpec::cpu("e2e-cpu"),
        NodeSpec::gpu("e2e-gpu-h100", H100, 8),
        NodeSpec::gpu("e2e-gpu-a100", A100, 8),
    ]
}

/// The Node object: labels and taints (status is written separately).
pub fn node_object(spec: &NodeSpec) -> Value {
    let mut labels = BTreeMap::from([
        (E2E_NODE_LABEL.to_string(), "true".to_string()),
        ("kubernetes.io/hostname".to_string(), spec.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
    ]);
    if let Some(product) = &spec.product {
        labels.insert(GPU_PRODUCT_LABEL.to_string(), product.clone());
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": spec.name, "labels": labels },
        "spec": { "taints": taints(spec) },
    })
}

/// The node's taints: `nvidia.com/gpu=present:NoSchedule` on GPU nodes, as GPU operators set.
pub fn taints(spec: &NodeSpec) -> Vec<Value> {
    if spec.gpus == 0 {
        return Vec::new();
    }
    vec![json!({ "key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule" })]
}

/// The status a healthy kubelet would report: capacity, allocatable and `Ready=True`.
pub fn node_status(spec: &NodeSpec, now: &str) -> Value {
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), spec.cpu.clone()),
        ("memory".to_string(), spec.memory.clone()),
        ("pods".to_string(), "110".to_string()),
    ]);
    if spec.gpus > 0 {
        capacity.insert(GPU_RESOURCE.to_string(), spec.gpus.to_string());
    }
    json!({
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kandle-kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "v1.36.2",
                "kubeProxyVersion": "",
                "containerRuntimeVersion": "kandle-kubelet://0.1.0",
                "kernelVersion": "", "osImage": "", "machineID": "", "systemUUID": "", "bootID": "",
            },
        }
    })
}

/// Creates (or updates) the node and makes it schedulable.
pub async fn add(client: &Client, spec: &NodeSpec) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    nodes
        .patch(&spec.name, &params, &Patch::Apply(node_object(spec)))
        .await
        .with_context(|| format!("creating node {}", spec.name))?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    nodes
        .patch_status(
            &spec.name,
            &PatchParams::default(),
            &Patch::Merge(node_status(spec, &now)),
        )
        .await
        .with_context(|| format!("reporting node {} Ready", spec.name))?;
    // A merge patch replaces the whole list, dropping the not-ready taint admission added.
    let only_ours = json!({ "spec": { "taints": taints(spec) } });
    nodes
        .patch(
            &spec.name,
            &PatchParams::default(),
            &Patch::Merge(only_ours),
        )
        .await
        .with_context(|| format!("removing the not-ready taint of node {}", spec.name))?;
    Ok(())
}

/// Deletes the node and force-deletes the pods bound to it, as the pod garbage collector does
/// for pods of a vanished node (their controllers then place replacements elsewhere).
pub async fn remove(client: &Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e).with_context(|| format!("deleting node {name}")),
    }
    let pods: Api<Pod> = Api::all(client.clone());
    let bound = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
        .await
        .with_context(|| format!("listing the pods of node {name}"))?;
    for pod in bound {
        super::namespace::force_delete(client, &pod).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_nodes_are_labelled_with_their_product_and_tainted() {
        let spec = NodeSpec::gpu("g", H100, 8);
        let node = node_object(&spec);
        assert_eq!(node["metadata"]["labels"][GPU_PRODUCT_LABEL], H100);
        assert_eq!(node["metadata"]["labels"][E2E_NODE_LABEL], "true");
        assert_eq!(node["spec"]["taints"][0]["key"], GPU_RESOURCE);
        assert_eq!(node["spec"]["taints"][0]["effect"], "NoSchedule");
        let status = node_status(&spec, "2026-01-01T00:00:00Z");
        assert_eq!(status["status"]["allocatable"][GPU_RESOURCE], "8");
        assert_eq!(status["status"]["conditions"][0]["type"], "Ready");
    }

    #[test]
    fn cpu_nodes_have_no_gpus_and_no_taints() {
        let spec = NodeSpec::cpu("c");
        assert_eq!(node_object(&spec)["spec"]["taints"], json!([]));
        let status = node_status(&spec, "2026-01-01T00:00:00Z");
        assert!(status["status"]["capacity"][GPU_RESOURCE].is_null());
        assert_eq!(status["status"]["capacity"]["pods"], "110");
    }

    #[test]
    fn the_default_nodes_are_one_cpu_and_two_gpu_products() {
        let nodes = default_nodes();
        let products: Vec<_> = nodes.iter().filter_map(|n| n.product.as_deref()).collect();
        assert_eq!(nodes.len(), 3);
        assert_eq!(products, [H100, A100]);
    }
}
