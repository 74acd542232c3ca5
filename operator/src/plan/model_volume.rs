//! The model volume of a revision's pods, from `spec.model.source`: a PVC, a host folder, an
//! OCI image volume, or an emptyDir filled by an init container that downloads an archive and
//! checks its sha256 before the runtime starts.

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, HostPathVolumeSource, ImageVolumeSource,
    PersistentVolumeClaimVolumeSource, Volume, VolumeMount,
};
use kandle_crds::{HttpSource, ModelSource};

use super::pod_template::restricted_security_context;

/// Where the model folder is mounted in the runtime container.
pub const MODEL_DIR: &str = "/models/model";
/// Name of the model volume.
pub const MODEL_VOLUME: &str = "model";
/// Name of the init container downloading `http` sources.
pub const FETCH_CONTAINER: &str = "fetch-model";
/// Where the init container stores the archive before unpacking it (inside the model volume,
/// so the node holds one copy of the model, not two).
const ARCHIVE_PATH: &str = "/models/model/.kandle-archive";

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
pub fn model_volume(source: &ModelSource, fetch_image: &str) -> ModelVolume {
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
        if let Some(http) = &source.http {
            init_container = Some(fetch_container(http, fetch_image));
        }
    }
    ModelVolume {
        volume,
        mount,
        init_container,
    }
}

/// The archive is compressed when its URL says so (query strings aside).
fn is_gzip(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.ends_with(".gz") || path.ends_with(".tgz")
}

/// The init container downloading and checking an `http` source. The URL and checksum travel
/// as environment variables, never spliced into the script, so no URL can inject shell.
fn fetch_container(http: &HttpSource, fetch_image: &str) -> Container {
    let unpack = if is_gzip(&http.url) {
        "tar -xzf"
    } else {
        "tar -xf"
    };
    let script = format!(
        "set -eu\n\
         wget -q -O {ARCHIVE_PATH} \"$MODEL_URL\"\n\
         echo \"$MODEL_SHA256  {ARCHIVE_PATH}\" | sha256sum -c -\n\
         {unpack} {ARCHIVE_PATH} -C {MODEL_DIR}\n\
         rm -f {ARCHIVE_PATH}\n"
    );
    Container {
        name: FETCH_CONTAINER.to_string(),
        image: Some(fetch_image.to_string()),
        command: Some(vec!["sh".into(), "-c".into(), script]),
        env: Some(vec![
            EnvVar {
                name: "MODEL_URL".into(),
                value: Some(http.url.clone()),
                ..Default::default()
            },
            EnvVar {
                name: "MODEL_SHA256".into(),
                value: Some(http.sha256.clone()),
                ..Default::default()
            },
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: MODEL_VOLUME.to_string(),
            mount_path: MODEL_DIR.to_string(),
            ..Default::default()
        }]),
        security_context: Some(restricted_security_context()),
        ..Default::default()
    }
}
