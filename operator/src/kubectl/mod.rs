//! The `kubectl kandle` plugin (the `kubectl-kandle` binary): see where a rollout stands and
//! steer it by hand.
//!
//! ```text
//! status / history ──read──> ModelDeployment + Deployments + Pods ─> render (pure) ─> text
//! promote|abort|retry|pause|resume ──merge patch──> metadata.annotations[kandle.dev/command]
//!                                      ─> operator acts once, records status.lastCommand
//! undo ──read──> ControllerRevision snapshot ──JSON Patch──> spec.{model,runtime,resources,scheduling}
//! ```
//!
//! Steering commands never touch the spec, so GitOps tools see no drift: they go through the
//! [`crate::command`] annotation, and the operator acts on each value once. `undo` is the one
//! spec change, and it refuses (unless told `--yes`) when a GitOps tool owns the spec and would
//! revert it. Decisions are pure ([`render`], [`verbs`], [`undo`]); [`api`] only reads and
//! writes through a `kube::Client`, so the integration tests drive it against the fake API
//! server.

pub mod api;
pub mod render;
pub mod undo;
pub mod verbs;

pub use api::{UndoOptions, Undone};

/// Field manager of every write `kubectl kandle` makes.
pub const FIELD_MANAGER: &str = "kubectl-kandle";

/// What went wrong, named after the operation or the refusal; the messages are printed as
/// they are, so each names the object and the state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ModelDeployment does not exist.
    #[error("modeldeployment {name:?} not found in namespace {namespace:?}")]
    NotFound {
        /// Its name.
        name: String,
        /// The namespace looked in.
        namespace: String,
    },
    /// Reading the ModelDeployment failed.
    #[error("reading modeldeployment {name:?} in namespace {namespace:?}")]
    GetModelDeployment {
        /// Its name.
        name: String,
        /// Its namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The ModelDeployment read is not one this version understands.
    #[error("decoding modeldeployment {name:?}")]
    DecodeModelDeployment {
        /// Its name.
        name: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// Listing the children (Deployments, pods, ControllerRevisions) failed.
    #[error("listing the {what} of modeldeployment {name:?}")]
    ListChildren {
        /// `Deployments`, `pods` or `ControllerRevisions`.
        what: &'static str,
        /// The ModelDeployment.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the command annotation failed.
    #[error("writing the kandle.dev/command annotation of modeldeployment {name:?}")]
    PatchCommand {
        /// The ModelDeployment.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Patching the spec for `undo` failed (a `test` failure means the object changed since
    /// it was read).
    #[error(
        "patching the spec of modeldeployment {name:?} (run undo again if it changed meanwhile)"
    )]
    PatchSpec {
        /// The ModelDeployment.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The command does not apply to where the canary stands.
    #[error("{0}")]
    Refused(String),
    /// `--to-revision N` names no revision.
    #[error("modeldeployment {name:?} has no revision {number}; known revisions: {known}")]
    UnknownRevision {
        /// The ModelDeployment.
        name: String,
        /// The number asked for.
        number: i64,
        /// The revisions kept, described.
        known: String,
    },
    /// No previous stable revision to go back to.
    #[error(
        "modeldeployment {name:?} has no previous stable revision to go back to (no superseded \
         revision in status.history); pass --to-revision N, known revisions: {known}"
    )]
    NoPreviousRevision {
        /// The ModelDeployment.
        name: String,
        /// The revisions kept, described.
        known: String,
    },
    /// The revision is in the history but its ControllerRevision was pruned.
    #[error(
        "revision {number} ({revision}) of modeldeployment {name:?} is no longer kept \
         (spec.revisionHistoryLimit); known revisions: {known}"
    )]
    RevisionNotKept {
        /// The ModelDeployment.
        name: String,
        /// The revision's name.
        revision: String,
        /// Its number in the history.
        number: i64,
        /// The revisions kept, described.
        known: String,
    },
    /// The ControllerRevision's data is not a snapshot this version can read.
    #[error("ControllerRevision {revision:?} holds no readable snapshot of the spec")]
    UnreadableRevision {
        /// The revision's name.
        revision: String,
    },
    /// Encoding the snapshot as JSON failed.
    #[error("encoding the revision's snapshot")]
    EncodeSnapshot {
        /// The encoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The spec already is the revision's.
    #[error(
        "the spec of modeldeployment {name:?} already matches revision {number} ({revision}): \
         nothing to undo"
    )]
    AlreadyAtRevision {
        /// The ModelDeployment.
        name: String,
        /// The revision's name.
        revision: String,
        /// Its number.
        number: i64,
    },
    /// A GitOps tool owns the spec; `--yes` was not given.
    #[error("{warning}; refusing without --yes (which changes the cluster anyway)")]
    GitOpsManaged {
        /// What the tool will do, and what to do instead.
        warning: String,
    },
    /// A watch failed (it is retried with backoff; this reports it).
    #[error("watching modeldeployment {name:?}")]
    Watch {
        /// The ModelDeployment.
        name: String,
        /// The watcher's error.
        #[source]
        source: kube::runtime::watcher::Error,
    },
}
