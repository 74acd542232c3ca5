//! "Pulling" images: an image reference resolves, by prefix, either to a local executable that
//! stands in for the image's entrypoint, or to the host's own programs (shell images such as
//! busybox), or to nothing (the pull fails). Image volumes resolve to local folders the same way.

use std::path::{Path, PathBuf};

/// How a container of a resolved image is started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// Run this executable in place of the image's entrypoint.
    Executable(PathBuf),
    /// Run the container's `command` with the host's programs.
    Shell,
}

impl Launcher {
    /// What the container status reports as `imageID`.
    pub fn image_id(&self, image: &str) -> String {
        match self {
            Launcher::Executable(path) => format!("{image}@local:{}", path.display()),
            Launcher::Shell => format!("{image}@host"),
        }
    }
}

/// Resolves `image` against the executable map and the shell-image prefixes; the longest
/// matching prefix wins. `None` means the image cannot be pulled.
pub fn resolve(
    image: &str,
    images: &[(String, PathBuf)],
    shell_images: &[String],
) -> Option<Launcher> {
    let executables = images
        .iter()
        .map(|(prefix, path)| (prefix.as_str(), Launcher::Executable(path.clone())));
    let shells = shell_images
        .iter()
        .map(|prefix| (prefix.as_str(), Launcher::Shell));
    longest_match(image, executables.chain(shells))
}

/// Resolves an image volume's reference to its local folder.
pub fn resolve_volume<'a>(
    reference: &str,
    image_volumes: &'a [(String, PathBuf)],
) -> Option<&'a Path> {
    longest_match(
        reference,
        image_volumes
            .iter()
            .map(|(prefix, dir)| (prefix.as_str(), dir.as_path())),
    )
}

/// The message of a failed pull, as the container's waiting state shows it.
pub fn pull_failure(image: &str) -> String {
    format!("failed to pull image \"{image}\": not found in the kubelet's image map")
}

fn longest_match<'p, T>(image: &str, candidates: impl Iterator<Item = (&'p str, T)>) -> Option<T> {
    let image = normalize(image);
    candidates
        .filter(|(prefix, _)| matches(image, normalize(prefix)))
        .max_by_key(|(prefix, _)| normalize(prefix).len())
        .map(|(_, value)| value)
}

/// `busybox:1.36`, `docker.io/library/busybox:1.36` and `index.docker.io/library/busybox` are
/// the same image.
fn normalize(reference: &str) -> &str {
    [
        "index.docker.io/library/",
        "docker.io/library/",
        "index.docker.io/",
        "docker.io/",
    ]
    .iter()
    .find_map(|registry| reference.strip_prefix(registry))
    .unwrap_or(reference)
}

/// A prefix matches a whole repository path segment, a tag or a digest, never half a name.
fn matches(image: &str, prefix: &str) -> bool {
    if prefix.is_empty() {
        return false;
    }
    match image.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => prefix.ends_with(['/', ':', '@']) || rest.starts_with(['/', ':', '@']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> Vec<(String, PathBuf)> {
        vec![
            (
                "ghcr.io/kandle-dev/kandle-runtime".into(),
                "/bin/runtime".into(),
            ),
            ("ghcr.io/kandle-dev".into(), "/bin/other".into()),
        ]
    }

    #[test]
    fn longest_prefix_wins_at_segment_boundaries() {
        let shell = vec!["busybox".to_string()];
        assert_eq!(
            resolve("ghcr.io/kandle-dev/kandle-runtime:0.1.0", &images(), &shell),
            Some(Launcher::Executable("/bin/runtime".into()))
        );
        assert_eq!(
            resolve(
                "ghcr.io/kandle-dev/kandle-runtime@sha256:ab",
                &images(),
                &shell
            ),
            Some(Launcher::Executable("/bin/runtime".into()))
        );
        assert_eq!(
            resolve("ghcr.io/kandle-dev/tool:1", &images(), &shell),
            Some(Launcher::Executable("/bin/other".into()))
        );
        assert_eq!(resolve("ghcr.io/kandle-devx/a", &images(), &shell), None);
        assert_eq!(resolve("busyboxy:1", &images(), &shell), None);
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        let shell = vec!["busybox".to_string()];
        for image in ["busybox", "busybox:1.36", "docker.io/library/busybox:1.36"] {
            assert_eq!(
                resolve(image, &[], &shell),
                Some(Launcher::Shell),
                "{image}"
            );
        }
        assert_eq!(resolve("nginx:1", &[], &shell), None);
    }

    #[test]
    fn image_volumes_resolve_by_prefix() {
        let volumes = vec![("ghcr.io/models/minilm".to_string(), PathBuf::from("/m"))];
        assert_eq!(
            resolve_volume("ghcr.io/models/minilm:v1", &volumes),
            Some(Path::new("/m"))
        );
        assert_eq!(resolve_volume("ghcr.io/models/other:v1", &volumes), None);
        assert!(pull_failure("x:1").contains("\"x:1\""));
    }
}
