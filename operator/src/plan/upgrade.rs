//! Operator upgrades: a new operator may change what every revision's pods look like at once (a
//! new default runtime image or pod template code, or the end of the busybox
//! fetch image). Such a change is a new
//! revision like any other, but the operator lets only a bounded number of `ModelDeployment`s
//! roll one out at a time (`--max-concurrent-upgrades`); the others keep their stable revision,
//! say that they wait, and roll when a slot frees.

use kandle_crds::ModelDeployment;

use super::revision::{KnownRevision, RevisionSnapshot};

/// Whether `fresh` (the current spec's snapshot) differs from the stable revision's only in
/// what the operator supplies: the runtime image when the spec sets none, the old fetch image and
/// the template version.
pub fn operator_only_change(
    md: &ModelDeployment,
    fresh: &RevisionSnapshot,
    stable: &RevisionSnapshot,
) -> bool {
    if fresh.hash() == stable.hash() {
        return false;
    }
    let mut as_before = fresh.clone();
    if md.spec.runtime.image.is_none() {
        as_before.runtime.image = stable.runtime.image.clone();
    }
    as_before.fetch_image = stable.fetch_image.clone();
    as_before.template_version = stable.template_version;
    as_before.hash() == stable.hash()
}

/// The stable revision's snapshot when `fresh` is an operator-only change of it.
pub fn pending_upgrade<'a>(
    md: &ModelDeployment,
    fresh: &RevisionSnapshot,
    stable: Option<&'a KnownRevision>,
) -> Option<&'a RevisionSnapshot> {
    let stable = stable?.snapshot.as_ref()?;
    operator_only_change(md, fresh, stable).then_some(stable)
}
