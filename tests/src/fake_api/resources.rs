//! The resource kinds the fake API server serves: their REST coordinates and which subresources
//! each has. A request for any other kind is answered 404, as a real server answers an unknown
//! resource.

/// How the `/scale` subresource finds the pod selector of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleSelector {
    /// A string at `.status.selector` (custom resources with a scale subresource).
    StatusString,
    /// A `LabelSelector` at `.spec.selector` (apps/v1 Deployments).
    SpecLabelSelector,
}

/// One served resource kind.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceKind {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Lower-case plural used in paths.
    pub plural: &'static str,
    /// The `kind` of one object.
    pub kind: &'static str,
    /// Whether `.status` is written only through the `/status` subresource.
    pub status_subresource: bool,
    /// Whether a `/scale` subresource is served, and where its selector comes from.
    pub scale: Option<ScaleSelector>,
}

impl ResourceKind {
    /// The `apiVersion` of objects of this kind.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    status_subresource: bool,
    scale: Option<ScaleSelector>,
) -> ResourceKind {
    ResourceKind {
        group,
        version,
        plural,
        kind,
        status_subresource,
        scale,
    }
}

/// Every kind the fake serves. All of them are namespaced.
pub static KINDS: &[ResourceKind] = &[
    kind(
        "kandle.dev",
        "v1alpha1",
        "modeldeployments",
        "ModelDeployment",
        true,
        Some(ScaleSelector::StatusString),
    ),
    kind(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        Some(ScaleSelector::SpecLabelSelector),
    ),
    kind(
        "apps",
        "v1",
        "controllerrevisions",
        "ControllerRevision",
        false,
        None,
    ),
    kind("", "v1", "services", "Service", false, None),
    kind("", "v1", "pods", "Pod", true, None),
    kind(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        false,
        None,
    ),
    kind("", "v1", "events", "Event", false, None),
    kind(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        None,
    ),
    kind(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        true,
        None,
    ),
    kind("coordination.k8s.io", "v1", "leases", "Lease", false, None),
    kind("events.k8s.io", "v1", "events", "Event", false, None),
    kind(
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
        "HTTPRoute",
        false,
        None,
    ),
];

/// Index into [`KINDS`] of the kind served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<usize> {
    KINDS
        .iter()
        .position(|k| k.group == group && k.version == version && k.plural == plural)
}
