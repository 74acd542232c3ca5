//! Label and annotation keys that kandle puts on the children of a `ModelDeployment`.

/// The name of the owning `ModelDeployment`.
pub const MODEL_DEPLOYMENT: &str = "kandle.dev/model-deployment";
/// The revision (content hash) a child belongs to.
pub const REVISION: &str = "kandle.dev/revision";
/// Recommended label: the application name (always `kandle-model`).
pub const APP_NAME: &str = "app.kubernetes.io/name";
/// Recommended label: the instance (the `ModelDeployment` name).
pub const APP_INSTANCE: &str = "app.kubernetes.io/instance";
/// Recommended label: the managing tool (always `kandle`).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`APP_NAME`] on every child.
pub const APP_NAME_VALUE: &str = "kandle-model";
/// Value of [`MANAGED_BY`] on every child.
pub const MANAGED_BY_VALUE: &str = "kandle";
/// Annotation carrying an imperative command (promote, abort, retry, pause, resume) for the
/// operator to consume; it leaves the spec, and so GitOps, untouched. `undo` is a spec change.
pub const COMMAND_ANNOTATION: &str = "kandle.dev/command";
