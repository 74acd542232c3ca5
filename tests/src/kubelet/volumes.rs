//! Volumes as local folders, and container paths rewritten to them. A PVC maps through the
//! claim map, a hostPath is the path itself, an image volume maps through the image-volume map,
//! and an emptyDir (or any other kind, left empty) is a fresh folder under the pod's folder.
//!
//! Processes run without a mount namespace, so a container's view of its files is recreated by
//! rewriting: in `command`, `args`, `workingDir` and env values, every occurrence of a mount
//! path that starts a path (at the start of the text or after a character that cannot be part
//! of a path, such as a space, quote or `=`) and ends at a path boundary is replaced by the local
//! folder, trying longer mount paths first. `--model-dir /models/model` and
//! `tar -C /models/model/x` are rewritten; `/models/model2` and `/a/models/model` are not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Volume, VolumeMount};

use super::image;

/// Why a volume or mount cannot be set up; shown as the container's waiting state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeError {
    pub reason: &'static str,
    pub message: String,
}

/// A pod volume on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalVolume {
    pub dir: PathBuf,
    /// The kubelet creates the folder empty for the pod and removes it afterwards.
    pub scratch: bool,
}

/// Each pod volume by name: its folder, or why there is none.
pub type VolumeDirs = BTreeMap<String, Result<LocalVolume, VolumeError>>;

/// Maps the pod's volumes to folders. Scratch folders live in `scratch_root/<name>`.
pub fn volume_dirs(
    volumes: &[Volume],
    claims: &[(String, PathBuf)],
    image_volumes: &[(String, PathBuf)],
    scratch_root: &Path,
) -> VolumeDirs {
    volumes
        .iter()
        .map(|volume| {
            let scratch = || {
                Ok(LocalVolume {
                    dir: scratch_root.join(&volume.name),
                    scratch: true,
                })
            };
            let existing = |dir: PathBuf| Ok(LocalVolume { dir, scratch: false });
            let local = if let Some(pvc) = &volume.persistent_volume_claim {
                match claims.iter().find(|(name, _)| *name == pvc.claim_name) {
                    Some((_, dir)) => existing(dir.clone()),
                    None => Err(VolumeError {
                        reason: "ContainerCreating",
                        message: format!(
                            "MountVolume failed for volume \"{}\": claim \"{}\" is not in the kubelet's claim map",
                            volume.name, pvc.claim_name
                        ),
                    }),
                }
            } else if let Some(host) = &volume.host_path {
                existing(PathBuf::from(&host.path))
            } else if let Some(source) = &volume.image {
                let reference = source.reference.as_deref().unwrap_or_default();
                match image::resolve_volume(reference, image_volumes) {
                    Some(dir) => existing(dir.to_path_buf()),
                    None => Err(VolumeError {
                        reason: "ErrImagePull",
                        message: format!(
                            "failed to pull image \"{reference}\" for volume \"{}\": not found in the kubelet's image-volume map",
                            volume.name
                        ),
                    }),
                }
            } else {
                scratch()
            };
            (volume.name.clone(), local)
        })
        .collect()
}

/// A container's mounts: container path -> local path, longest container path first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mounts {
    entries: Vec<(String, PathBuf)>,
}

/// The mounts of one container, or the first volume problem among them.
pub fn mounts(container_mounts: &[VolumeMount], dirs: &VolumeDirs) -> Result<Mounts, VolumeError> {
    let mut entries = Vec::new();
    for mount in container_mounts {
        let volume = dirs.get(&mount.name).ok_or_else(|| VolumeError {
            reason: "CreateContainerConfigError",
            message: format!(
                "volume \"{}\" is mounted but not defined in the pod",
                mount.name
            ),
        })?;
        let volume = volume.clone()?;
        let sub_path = mount
            .sub_path
            .as_deref()
            .or(mount.sub_path_expr.as_deref())
            .unwrap_or_default();
        let local = if sub_path.is_empty() {
            volume.dir
        } else {
            volume.dir.join(sub_path)
        };
        let container_path = mount.mount_path.trim_end_matches('/');
        if container_path.is_empty() {
            continue; // a mount over "/" cannot be told apart from any other absolute path
        }
        entries.push((container_path.to_string(), local));
    }
    entries.sort_by_key(|(container_path, _)| std::cmp::Reverse(container_path.len()));
    Ok(Mounts { entries })
}

impl Mounts {
    /// `text` with container paths replaced by local ones (see the module doc).
    pub fn rewrite(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut previous: Option<char> = None;
        while let Some(c) = rest.chars().next() {
            if !previous.is_some_and(is_path_char) {
                if let Some((len, local)) = self.mount_at(rest) {
                    out.push_str(&local.to_string_lossy());
                    previous = rest[..len].chars().next_back();
                    rest = &rest[len..];
                    continue;
                }
            }
            out.push(c);
            previous = Some(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    fn mount_at(&self, text: &str) -> Option<(usize, &Path)> {
        self.entries.iter().find_map(|(container, local)| {
            let after = text.strip_prefix(container.as_str())?;
            let boundary = after
                .chars()
                .next()
                .is_none_or(|next| next == '/' || !is_path_char(next));
            boundary.then_some((container.len(), local.as_path()))
        })
    }
}

fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '~' | '+')
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, HostPathVolumeSource, ImageVolumeSource,
        PersistentVolumeClaimVolumeSource,
    };

    use super::*;

    fn volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Default::default()
        }
    }

    fn mount(name: &str, path: &str, sub_path: Option<&str>) -> VolumeMount {
        VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            sub_path: sub_path.map(Into::into),
            ..Default::default()
        }
    }

    fn runtime_pod_dirs() -> VolumeDirs {
        let mut model = volume("model");
        model.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: "models".into(),
            read_only: Some(true),
        });
        let mut tmp = volume("tmp");
        tmp.empty_dir = Some(EmptyDirVolumeSource::default());
        let claims = vec![("models".to_string(), PathBuf::from("/cache/models"))];
        volume_dirs(
            &[model, tmp],
            &claims,
            &[],
            Path::new("/work/ns/pod/volumes/u1"),
        )
    }

    #[test]
    fn maps_each_kind_of_volume() {
        let dirs = runtime_pod_dirs();
        assert_eq!(
            dirs["model"],
            Ok(LocalVolume {
                dir: "/cache/models".into(),
                scratch: false
            })
        );
        assert_eq!(
            dirs["tmp"],
            Ok(LocalVolume {
                dir: "/work/ns/pod/volumes/u1/tmp".into(),
                scratch: true
            })
        );

        let mut host = volume("host");
        host.host_path = Some(HostPathVolumeSource {
            path: "/srv/data".into(),
            type_: None,
        });
        let mut image = volume("img");
        image.image = Some(ImageVolumeSource {
            reference: Some("ghcr.io/m/minilm:1".into()),
            pull_policy: None,
        });
        let mut missing = volume("gone");
        missing.image = Some(ImageVolumeSource {
            reference: Some("ghcr.io/m/other:1".into()),
            pull_policy: None,
        });
        let mut claim = volume("claim");
        claim.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
            claim_name: "unknown".into(),
            read_only: None,
        });
        let image_volumes = vec![("ghcr.io/m/minilm".to_string(), PathBuf::from("/img"))];
        let dirs = volume_dirs(
            &[host, image, missing, claim],
            &[],
            &image_volumes,
            Path::new("/p"),
        );
        assert_eq!(dirs["host"].as_ref().unwrap().dir, Path::new("/srv/data"));
        assert_eq!(dirs["img"].as_ref().unwrap().dir, Path::new("/img"));
        let error = dirs["gone"].as_ref().unwrap_err();
        assert_eq!(error.reason, "ErrImagePull");
        assert!(
            error.message.contains("ghcr.io/m/other:1"),
            "{}",
            error.message
        );
        assert!(dirs["claim"]
            .as_ref()
            .unwrap_err()
            .message
            .contains("unknown"));
    }

    #[test]
    fn rewrites_mount_paths_with_sub_path_longest_first() {
        let dirs = runtime_pod_dirs();
        let mounts = mounts(
            &[
                mount("tmp", "/tmp", None),
                mount("model", "/models/model", Some("all-MiniLM-L6-v2")),
            ],
            &dirs,
        )
        .unwrap();
        assert_eq!(
            mounts.rewrite("/models/model"),
            "/cache/models/all-MiniLM-L6-v2"
        );
        assert_eq!(
            mounts.rewrite("--model-dir=/models/model/x.json"),
            "--model-dir=/cache/models/all-MiniLM-L6-v2/x.json"
        );
        assert_eq!(
            mounts.rewrite("wget -O /models/model/.a \"$U\"\ntar -xf '/models/model/.a' -C /models/model"),
            "wget -O /cache/models/all-MiniLM-L6-v2/.a \"$U\"\ntar -xf '/cache/models/all-MiniLM-L6-v2/.a' -C /cache/models/all-MiniLM-L6-v2"
        );
        assert_eq!(
            mounts.rewrite("TMPDIR=/tmp"),
            "TMPDIR=/work/ns/pod/volumes/u1/tmp"
        );
        for untouched in [
            "/models/model2",
            "/a/models/model",
            "/tmpfoo",
            "x/tmp",
            "tmp",
        ] {
            assert_eq!(mounts.rewrite(untouched), untouched);
        }
    }

    #[test]
    fn nested_mounts_prefer_the_longer_path() {
        let mut outer = volume("outer");
        outer.host_path = Some(HostPathVolumeSource {
            path: "/o".into(),
            type_: None,
        });
        let mut inner = volume("inner");
        inner.host_path = Some(HostPathVolumeSource {
            path: "/i".into(),
            type_: None,
        });
        let dirs = volume_dirs(&[outer, inner], &[], &[], Path::new("/p"));
        let mounts = mounts(
            &[
                mount("outer", "/data/", None),
                mount("inner", "/data/inner", None),
            ],
            &dirs,
        )
        .unwrap();
        assert_eq!(mounts.rewrite("/data/inner/a /data/x"), "/i/a /o/x");
    }

    #[test]
    fn a_bad_or_unknown_volume_fails_the_mounts() {
        let dirs = volume_dirs(&[], &[], &[], Path::new("/p"));
        let error = mounts(&[mount("nope", "/x", None)], &dirs).unwrap_err();
        assert_eq!(error.reason, "CreateContainerConfigError");
    }
}
