//! `spec.model`: what is served (name, version, task), where the weights come from and how they
//! are loaded.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The model to serve.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// Served model name: the `model` field of OpenAI requests and the name in
    /// `/v2/models/{name}`. Letters, digits, '.', '_', '-' and '/', at most 128 characters.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    )]
    pub name: String,
    /// Free-form version label (for example a training run or a date), shown in
    /// `kubectl get md` and recorded in `status.history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub version: Option<String>,
    /// What the model does: `embedding` (OpenAI `/v1/embeddings`) or `generation` (a decoder
    /// LLM behind OpenAI `/v1/chat/completions` and `/v1/completions`). `classification` is not
    /// served yet: the API server rejects it.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self != 'classification'").message("spec.model.task: classification is not served yet; use embedding or generation"))]
    pub task: Task,
    /// Where the model folder comes from: a Hugging Face layout (config.json, *.safetensors,
    /// tokenizer.json) or, for `generation`, a GGUF file, which carries its own tokenizer.
    /// Exactly one of `huggingFace`, `s3`, `pvc`, `hostPath`, `image` or `http`. A folder with
    /// several `.gguf` files needs one chosen: fetch only one (`huggingFace.files`, for
    /// example `*Q4_1.gguf`) or name it with `runtime.args: [--model-file, NAME]`.
    pub source: ModelSource,
    /// Weights precision. `auto` is f16 on a GPU and f32 on a CPU; GGUF weights are
    /// dequantized to f16 on a GPU, and to f32 on a CPU when that takes at most a quarter of the
    /// container's memory (else they stay quantized).
    #[serde(default)]
    pub dtype: Dtype,
    /// Longest input in tokens; longer inputs are rejected with 413 unless truncation is
    /// enabled. For `generation`, the context: prompt and completion tokens together.
    /// Defaults to the model's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 131072))]
    pub max_sequence_length: Option<i32>,
}

/// The kind of model behind the deployment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Task {
    /// Sentence embeddings (OpenAI `/v1/embeddings`).
    #[default]
    Embedding,
    /// Text generation by a decoder LLM (Llama family, from a GGUF file or safetensors): OpenAI
    /// `/v1/chat/completions` and `/v1/completions`, streamed with `stream: true`.
    Generation,
    /// Sequence classification: not served yet, so the API server rejects it.
    Classification,
}

/// Weights precision of the served model.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Dtype {
    /// f16 on a GPU, f32 on a CPU.
    #[default]
    Auto,
    /// 32-bit floats.
    F32,
    /// 16-bit floats (GPU).
    F16,
    /// bfloat16 (GPU).
    Bf16,
}

/// Where the model folder comes from; exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.huggingFace), has(self.s3), has(self.pvc), has(self.hostPath), has(self.image), has(self.http)].filter(x, x).size() == 1").message("spec.model.source: exactly one of huggingFace, s3, pvc, hostPath, image or http must be set"))]
pub struct ModelSource {
    /// A Hugging Face Hub repository, fetched by an init container (`kandle-runtime fetch hf`)
    /// before the runtime starts: each file is checked against the Hub's hashes, and an
    /// interrupted download resumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugging_face: Option<HuggingFaceSource>,
    /// A prefix in S3-compatible object storage, fetched by an init container
    /// (`kandle-runtime fetch s3`) before the runtime starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    /// A PersistentVolumeClaim holding the model folder, mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcSource>,
    /// A folder on the node (for pre-seeded nodes and local clusters), mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathSource>,
    /// An OCI image (artifact) whose content is the model folder, mounted as an image volume
    /// (Kubernetes 1.33+ with the ImageVolume feature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSource>,
    /// A tar archive (optionally gzip-compressed) of the model folder, or a single `.gguf`
    /// file, downloaded by an init container (`kandle-runtime fetch http`) and checked against
    /// `sha256` before the runtime starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSource>,
}

/// A model folder on a PersistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PvcSource {
    /// Name of the PersistentVolumeClaim, in the ModelDeployment's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Folder inside the volume that holds the model (default: the volume root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[^/].*$"))]
    pub sub_path: Option<String>,
}

/// A model folder on the node's filesystem.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HostPathSource {
    /// Absolute path of the model folder on the node.
    #[schemars(regex(pattern = r"^/.*$"))]
    pub path: String,
}

/// A model folder shipped as an OCI image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageSource {
    /// Image reference, e.g. `registry.example.com/models/minilm:v1` or pinned by digest.
    #[schemars(length(min = 1, max = 512))]
    pub reference: String,
    /// When to pull the image: Always, IfNotPresent (default) or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(Always|IfNotPresent|Never)$"))]
    pub pull_policy: Option<String>,
}

/// A model archive, or a single GGUF file, fetched over HTTP(S).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpSource {
    /// URL of a `.tar` or `.tar.gz` archive whose top level is the model folder's content, or
    /// of a single GGUF file (the URL path ends in `.gguf`), which lands in the folder under
    /// the path's last segment.
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub url: String,
    /// Expected SHA-256 of the download: 64 lowercase hex characters. The download is refused
    /// when it does not match.
    #[schemars(regex(pattern = r"^[a-f0-9]{64}$"))]
    pub sha256: String,
}

/// A model repository on the Hugging Face Hub (or a server speaking its API, such as a mirror).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HuggingFaceSource {
    /// Repository id, `organization/name` (for example `sentence-transformers/all-MiniLM-L6-v2`).
    #[schemars(
        length(min = 1, max = 200),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
    )]
    pub repo: String,
    /// A commit hash (recommended: 40 hex characters), a branch or a tag. A branch or tag is
    /// resolved to its commit once and recorded in `status.huggingFace`; every pod fetches that
    /// commit, so the model never changes under a running deployment. To move to a branch's new
    /// head, set the new commit (or another revision name).
    #[serde(default = "default_hub_revision")]
    #[schemars(length(min = 1, max = 255), regex(pattern = r"^[^\s]+$"))]
    pub revision: String,
    /// Glob patterns of the files to fetch (`*` does not cross `/`). Default: `*.json`,
    /// `*.safetensors`, `*.txt`, `*.model`, `*.gguf` and `1_Pooling/*`, which leaves out other
    /// frameworks' weights (ONNX, OpenVINO, PyTorch `.bin`) and the README. A GGUF repository
    /// usually holds one file per quantization: name the one to serve, e.g. `*Q4_1.gguf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub files: Vec<String>,
    /// The key of a Secret in the ModelDeployment's namespace holding a Hub access token, for
    /// gated and private models. The operator reads it to resolve a branch or tag; the fetch
    /// init container gets it as `HF_TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Base URL of the Hub API. Default: `https://huggingface.co`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,
}

/// The Hub's own address, where `huggingFace.endpoint` is not set.
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";

fn default_hub_revision() -> String {
    "main".to_string()
}

impl HuggingFaceSource {
    /// The Hub API base URL, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(DEFAULT_HUB_ENDPOINT)
            .trim_end_matches('/')
    }
}

/// Whether `revision` is a full commit hash (40 lowercase hex characters), which needs no
/// resolving.
pub fn is_commit(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One key of a Secret in the ModelDeployment's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret. Default: `token`.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_token_key() -> String {
    "token".to_string()
}

/// A prefix in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, GCS interoperability...).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    /// Bucket name.
    #[schemars(length(min = 3, max = 63))]
    pub bucket: String,
    /// Key prefix of the model folder (for example `models/minilm/`); every object under it is
    /// fetched, keeping its path below the prefix. Default: the whole bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// Endpoint URL of an S3-compatible service (path-style requests). Default: AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https?://[^\s]+$"))]
    pub endpoint: Option<String>,
    /// Region of the bucket. Default: `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// A Secret in the ModelDeployment's namespace with the keys `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and optionally `AWS_SESSION_TOKEN`). Without it, the pod's own
    /// identity is used (IRSA or EKS Pod Identity through the ServiceAccount, or the node's
    /// instance profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// A Secret in the ModelDeployment's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
