//! Errors of the reconcile loop, each named after the operation that failed so an error chain
//! reads as a story; [`Error::metric_label`] names the variant in metrics.

use thiserror::Error;

/// What went wrong while reconciling a `ModelDeployment`.
#[derive(Debug, Error)]
pub enum Error {
    /// The `ModelDeployment` has no namespace (it is a namespaced resource, so this is a bug in
    /// whoever handed it over).
    #[error("ModelDeployment {name} has no namespace")]
    MissingNamespace {
        /// Name of the resource.
        name: String,
    },
    /// Listing the Deployments of a `ModelDeployment` failed.
    #[error("listing the Deployments of {md}")]
    ObserveDeployments {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Listing the ControllerRevisions of a `ModelDeployment` failed.
    #[error("listing the ControllerRevisions of {md}")]
    ObserveRevisions {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading the Service of a `ModelDeployment` failed.
    #[error("reading the Service of {md}")]
    ObserveService {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading the PodDisruptionBudget of a `ModelDeployment` failed.
    #[error("reading the PodDisruptionBudget of {md}")]
    ObservePdb {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading the HorizontalPodAutoscaler of a `ModelDeployment` failed.
    #[error("reading the HorizontalPodAutoscaler of {md}")]
    ObserveHpa {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Listing the pods of a `ModelDeployment` failed.
    #[error("listing the pods of {md}")]
    ObservePods {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading the PersistentVolumeClaim named by the model source failed.
    #[error("reading PersistentVolumeClaim {claim} of {md}")]
    ObservePvc {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The claim name.
        claim: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The watches behind the controller's caches stopped (the controller is shutting down).
    #[error("the controller's caches are closed")]
    CacheClosed,
    /// An object in the controller's caches does not read back as its kind.
    #[error("reading the cached {kind} {name}")]
    CachedObject {
        /// Kind of the object.
        kind: &'static str,
        /// `namespace/name` of the object.
        name: String,
        /// Why it does not read.
        #[source]
        source: serde_json::Error,
    },
    /// Server-side apply of a Deployment failed.
    #[error("applying Deployment {name}")]
    ApplyDeployment {
        /// Deployment name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of a ControllerRevision failed.
    #[error("applying ControllerRevision {name}")]
    ApplyRevision {
        /// ControllerRevision name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of the Service failed.
    #[error("applying Service {name}")]
    ApplyService {
        /// Service name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of the HTTPRoute failed.
    #[error("applying HTTPRoute {name}")]
    ApplyRoute {
        /// HTTPRoute name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading the HTTPRoute of a `ModelDeployment` failed.
    #[error("reading the HTTPRoute of {md}")]
    ObserveRoute {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of the HorizontalPodAutoscaler failed.
    #[error("applying HorizontalPodAutoscaler {name}")]
    ApplyHpa {
        /// HorizontalPodAutoscaler name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Server-side apply of the PodDisruptionBudget failed.
    #[error("applying PodDisruptionBudget {name}")]
    ApplyPdb {
        /// PodDisruptionBudget name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Writing the status subresource failed.
    #[error("applying the status of {md}")]
    ApplyStatus {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting a child that is no longer wanted failed.
    #[error("deleting {kind} {name}")]
    DeleteOrphan {
        /// Kind of the child.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Publishing an event failed.
    #[error("publishing event {reason} for {md}")]
    PublishEvent {
        /// `namespace/name` of the ModelDeployment.
        md: String,
        /// The event's reason.
        reason: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// The API server's refusal of a child as invalid (HTTP 400 or 422), in words naming the
    /// child: a spec the CRD schema accepted but Kubernetes cannot run. `None` for any other
    /// failure.
    pub fn refusal(&self) -> Option<String> {
        let (kind, name, source) = match self {
            Error::ApplyDeployment { name, source } => ("Deployment", name, source),
            Error::ApplyRevision { name, source } => ("ControllerRevision", name, source),
            Error::ApplyService { name, source } => ("Service", name, source),
            Error::ApplyPdb { name, source } => ("PodDisruptionBudget", name, source),
            Error::ApplyHpa { name, source } => ("HorizontalPodAutoscaler", name, source),
            Error::ApplyRoute { name, source } => ("HTTPRoute", name, source),
            _ => return None,
        };
        match source {
            kube::Error::Api(status) if status.code == 400 || status.code == 422 => Some(format!(
                "{}{kind} {name}: {}",
                crate::plan::REJECTED_PREFIX,
                status.message
            )),
            _ => None,
        }
    }

    /// Whether the status write was refused because the `ModelDeployment` changed after the pass
    /// read it (HTTP 409 on the conditional status write): not a failure, a reason to replan.
    pub fn is_stale_status(&self) -> bool {
        matches!(self, Error::ApplyStatus { source: kube::Error::Api(status), .. } if status.code == 409)
    }

    /// The variant's name, used as the `error` label of the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::MissingNamespace { .. } => "MissingNamespace",
            Error::ObserveDeployments { .. } => "ObserveDeployments",
            Error::ObserveRevisions { .. } => "ObserveRevisions",
            Error::ObserveService { .. } => "ObserveService",
            Error::ObservePdb { .. } => "ObservePdb",
            Error::ObserveHpa { .. } => "ObserveHpa",
            Error::ObservePods { .. } => "ObservePods",
            Error::ObservePvc { .. } => "ObservePvc",
            Error::CacheClosed => "CacheClosed",
            Error::CachedObject { .. } => "CachedObject",
            Error::ApplyDeployment { .. } => "ApplyDeployment",
            Error::ApplyRevision { .. } => "ApplyRevision",
            Error::ApplyService { .. } => "ApplyService",
            Error::ApplyPdb { .. } => "ApplyPdb",
            Error::ApplyHpa { .. } => "ApplyHpa",
            Error::ApplyRoute { .. } => "ApplyRoute",
            Error::ObserveRoute { .. } => "ObserveRoute",
            Error::ApplyStatus { .. } => "ApplyStatus",
            Error::DeleteOrphan { .. } => "DeleteOrphan",
            Error::PublishEvent { .. } => "PublishEvent",
        }
    }
}
