//! The model volume of a revision's pods, from `spec.model.source`: a PVC, a host folder, an
//! OCI image volume, or an emptyDir filled before the runtime starts by an init container
//! running the runtime image's own fetcher (`kandle-runtime fetch hf|s3|http`), which retries,
//! resumes, checks hashes and says what went wrong in the pod's status.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource, ImageVolumeSource,
    PersistentVolumeClaimVolumeSource, SecretKeySelector, Volume, VolumeMount,
};
use kandle_crds::{HttpSource, HuggingFaceSource, ModelSource, S3Source};

use super::pod_template::restricted_security_context;

/// Where the model folder is mounted in the runtime container.
pub const MODEL_DIR: &str = "/models/model";
/// Name of the model volume.
pub const MODEL_VOLUME: &str = "model";
/// Name of the init container fetching `huggingFace`, `s3` and `http` sources.
pub const FETCH_CONTAINER: &str = "fetch-model";
/// The environment variable the fetcher reads a Hub token from.
pub const HF_TOKEN_ENV: &str = "HF_TOKEN";
/// The keys an S3 credentials Secret holds, passed to the fetcher under the same names.
const S3_SECRET_KEYS: [(&str, bool); 3] = [
    ("AWS_ACCESS_KEY_ID", false),
    ("AWS_SECRET_ACCESS_KEY", false),
    ("AWS_SESSION_TOKEN", true),
];

/// The volume, the runtime container's mount and, for `http` sources, the init container.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelVolume {
    /// The pod volume named [`MODEL_VOLUME`].
    pub volume: Volume,
    /// The runtime container's read-only mount at [`MODEL_DIR`].
    pub mount: VolumeMount,
    /// The init container filling the volume, if the source needs one.
    pub init_container: Option<Container>,
}

/// Builds the model volume for `source`. A source with no field set (the API server's CEL rule
/// rejects it) yields an empty directory, so the runtime fails with "no model" rather than the
/// operator panicking.
pub fn model_volume(source: &ModelSource, runtime_image: &str) -> ModelVolume {
    let mut mount = VolumeMount {
        name: MODEL_VOLUME.to_string(),
        mount_path: MODEL_DIR.to_string(),
        read_only: Some(true),
        ..Default::default()
    };
    let mut volume = Volume {
        name: MODEL_VOLUME.to_string(),
        ..Default::default()
    };
    let mut init_container = None;

    if let Some(pvc) = &source.pvc {
        volume.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: pvc.claim_name.clone(),
            read_only: Some(true),
        });
        mount.sub_path = pvc.sub_path.clone();
    } else if let Some(host) = &source.host_path {
        volume.host_path = Some(HostPathVolumeSource {
            path: host.path.clone(),
            type_: Some("Directory".to_string()),
        });
    } else if let Some(image) = &source.image {
        volume.image = Some(ImageVolumeSource {
            reference: Some(image.reference.clone()),
            pull_policy: image.pull_policy.clone(),
        });
    } else {
        volume.empty_dir = Some(EmptyDirVolumeSource::default());
        init_container = fetch_args(source).map(|(args, env)| Container {
            name: FETCH_CONTAINER.to_string(),
            image: Some(runtime_image.to_string()),
            args: Some(args),
            env: (!env.is_empty()).then_some(env),
            volume_mounts: Some(vec![VolumeMount {
                name: MODEL_VOLUME.to_string(),
                mount_path: MODEL_DIR.to_string(),
                ..Default::default()
            }]),
            // The fetcher writes its error there; the logs' tail stands in if it could not.
            termination_message_policy: Some("FallbackToLogsOnError".to_string()),
            security_context: Some(restricted_security_context()),
            ..Default::default()
        });
    }
    ModelVolume {
        volume,
        mount,
        init_container,
    }
}

/// The fetcher's arguments and environment for a source fetched by an init container.
fn fetch_args(source: &ModelSource) -> Option<(Vec<String>, Vec<EnvVar>)> {
    let (mut args, env) = if let Some(hf) = &source.hugging_face {
        hub_args(hf)
    } else if let Some(s3) = &source.s3 {
        s3_args(s3)
    } else {
        http_args(source.http.as_ref()?)
    };
    args.extend(["--dest".to_string(), MODEL_DIR.to_string()]);
    Some((args, env))
}

fn hub_args(hf: &HuggingFaceSource) -> (Vec<String>, Vec<EnvVar>) {
    let mut args = words(&[
        "fetch",
        "hf",
        "--repo",
        &hf.repo,
        "--revision",
        &hf.revision,
    ]);
    args.extend(["--endpoint".to_string(), hf.endpoint().to_string()]);
    for pattern in &hf.files {
        args.extend(["--file".to_string(), pattern.clone()]);
    }
    let env = hf
        .token_secret_ref
        .iter()
        .map(|r| secret_env(HF_TOKEN_ENV, &r.name, &r.key, false))
        .collect();
    (args, env)
}

fn s3_args(s3: &S3Source) -> (Vec<String>, Vec<EnvVar>) {
    let mut args = words(&["fetch", "s3", "--bucket", &s3.bucket]);
    for (flag, value) in [
        ("--prefix", &s3.prefix),
        ("--endpoint", &s3.endpoint),
        ("--region", &s3.region),
    ] {
        if let Some(value) = value {
            args.extend([flag.to_string(), value.clone()]);
        }
    }
    let env = s3
        .credentials_secret_ref
        .iter()
        .flat_map(|r| {
            S3_SECRET_KEYS
                .iter()
                .map(|(key, optional)| secret_env(key, &r.name, key, *optional))
        })
        .collect();
    (args, env)
}

fn http_args(http: &HttpSource) -> (Vec<String>, Vec<EnvVar>) {
    let args = words(&[
        "fetch",
        "http",
        "--url",
        &http.url,
        "--sha256",
        &http.sha256,
    ]);
    (args, Vec::new())
}

fn words(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `name` from key `key` of Secret `secret`.
fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
