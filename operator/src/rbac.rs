//! The Kubernetes API permissions the operator needs, as data: per resource, the verbs the code
//! calls and why. `manifests/rbac/` grants exactly this set, no more; `operator/tests/rbac.rs`
//! holds the two in step and checks that every kind the code calls is listed here.

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_crds::ModelDeployment;
use kube::api::ApiResource;
use kube::Resource;

use crate::config::CONTROLLER_NAME;
use crate::plan::http_route_resource;

/// Which of the operator's roles grants a permission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The ClusterRole `kandle-operator` (`manifests/rbac/cluster-role.yaml`).
    Cluster,
    /// The Role `kandle-operator-leader-election` in the operator's namespace
    /// (`manifests/rbac/leader-election-role.yaml`).
    LeaderElection,
    /// The ClusterRole `kandle-hub-token-reader` (`manifests/rbac/optional/hub-token-reader.yaml`),
    /// not installed by default: an administrator binds it, with a RoleBinding, in each
    /// namespace whose ModelDeployments name a gated model's branch with a token Secret.
    HubTokens,
}

/// Verbs on one resource (or subresource) that the operator calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    /// The role granting it.
    pub role: Role,
    /// API group; `""` for the core group.
    pub group: String,
    /// Plural resource name, `resource/subresource` for a subresource.
    pub resource: String,
    /// The kind (the Rust type the code passes to `Api`); `None` for a subresource.
    pub kind: Option<String>,
    /// Object names the grant is limited to; empty for any.
    pub names: Vec<String>,
    /// The verbs called.
    pub verbs: Vec<&'static str>,
    /// Why the operator calls them.
    pub reason: &'static str,
}

impl Permission {
    fn of<K: Resource<DynamicType = ()>>(
        role: Role,
        verbs: &[&'static str],
        reason: &'static str,
    ) -> Self {
        Self {
            role,
            group: K::group(&()).into_owned(),
            resource: K::plural(&()).into_owned(),
            kind: Some(K::kind(&()).into_owned()),
            names: Vec::new(),
            verbs: verbs.to_vec(),
            reason,
        }
    }

    /// A kind the operator reaches through a dynamic API (its crate's types do not implement
    /// this kube's traits).
    fn dynamic(
        role: Role,
        resource: &ApiResource,
        verbs: &[&'static str],
        reason: &'static str,
    ) -> Self {
        Self {
            role,
            group: resource.group.clone(),
            resource: resource.plural.clone(),
            kind: Some(resource.kind.clone()),
            names: Vec::new(),
            verbs: verbs.to_vec(),
            reason,
        }
    }

    fn subresource(self, name: &str) -> Self {
        Self {
            resource: format!("{}/{name}", self.resource),
            kind: None,
            ..self
        }
    }

    fn named(self, name: &str) -> Self {
        Self {
            names: vec![name.to_string()],
            ..self
        }
    }
}

/// Every permission the operator needs, in the order `manifests/rbac/` lists them.
pub fn permissions() -> Vec<Permission> {
    use Role::{Cluster, HubTokens, LeaderElection};
    vec![
        Permission::of::<ModelDeployment>(
            Cluster,
            &["get", "list", "watch", "patch"],
            "the controller watches ModelDeployments and reads one afresh before acting; the \
             start-up check lists them; a kandle.dev/command annotation it acted on is removed \
             (a JSON patch that tests its value first; the spec is never written)",
        ),
        Permission::of::<ModelDeployment>(
            Cluster,
            &["patch"],
            "the status is written by server-side apply through the status subresource",
        )
        .subresource("status"),
        Permission::of::<ModelDeployment>(
            Cluster,
            &["update"],
            "children's owner references set blockOwnerDeletion, which \
             OwnerReferencesPermissionEnforcement allows only with update on the owner's finalizers",
        )
        .subresource("finalizers"),
        Permission::of::<ControllerRevision>(
            Cluster,
            &["list", "watch", "create", "patch", "delete"],
            "one per revision: watched and listed, applied (an apply that creates needs create), \
             pruned past revisionHistoryLimit",
        ),
        Permission::of::<Deployment>(
            Cluster,
            &["list", "watch", "create", "patch", "delete"],
            "one per live revision: watched and listed, applied (create and patch), deleted with \
             its revision",
        ),
        Permission::of::<Service>(
            Cluster,
            &["get", "list", "watch", "create", "patch", "delete"],
            "the ModelDeployment's Service, and with trafficRouting.httpRoute one per revision: \
             watched, read, applied (create and patch), deleted when no longer wanted",
        ),
        Permission::of::<PodDisruptionBudget>(
            Cluster,
            &["get", "list", "watch", "create", "patch", "delete"],
            "the PodDisruptionBudget: watched, read, applied (create and patch), deleted below two \
             replicas",
        ),
        Permission::of::<HorizontalPodAutoscaler>(
            Cluster,
            &["get", "list", "watch", "create", "patch", "delete"],
            "the HorizontalPodAutoscaler of metric cpu: watched, read, applied (create and patch), \
             deleted when the metric changes",
        ),
        Permission::dynamic(
            Cluster,
            &http_route_resource(),
            &["get", "create", "patch", "delete"],
            "with trafficRouting.httpRoute: the ModelDeployment's HTTPRoute is read each pass (not \
             watched: the Gateway API may not be installed), applied (create and patch), deleted \
             when httpRoute is removed",
        ),
        Permission::of::<Pod>(
            Cluster,
            &["list", "watch"],
            "pods are listed for scheduling failures and watched so their changes wake a pass",
        ),
        Permission::of::<PersistentVolumeClaim>(
            Cluster,
            &["get"],
            "a pvc model source is checked to exist",
        ),
        Permission::of::<Secret>(
            HubTokens,
            &["get"],
            "a huggingFace source naming a branch or tag with a tokenSecretRef: the token is read \
             to resolve the branch to its commit, once per revision (never listed or watched), \
             only in namespaces where an administrator bound this role",
        ),
        Permission::of::<Event>(
            Cluster,
            &["create", "patch"],
            "kube's Recorder creates events.k8s.io Events and patches repeats into a series",
        ),
        Permission::of::<Lease>(
            LeaderElection,
            &["create"],
            "the first replica creates the leader Lease (create cannot be limited by name)",
        ),
        Permission::of::<Lease>(
            LeaderElection,
            &["get", "update"],
            "replicas read the leader Lease; the holder renews and hands it back, a standby takes \
             it over (update: a replace conditional on the resourceVersion read)",
        )
        .named(CONTROLLER_NAME),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_come_from_the_api_types() {
        let table = permissions();
        let find = |resource: &str| table.iter().find(|p| p.resource == resource).unwrap();
        assert_eq!(find("modeldeployments").group, "kandle.dev");
        assert_eq!(find("modeldeployments/status").kind, None);
        assert_eq!(find("poddisruptionbudgets").group, "policy");
        assert_eq!(find("events").group, "events.k8s.io");
        assert_eq!(find("pods").kind.as_deref(), Some("Pod"));
    }

    #[test]
    fn every_permission_says_why_and_grants_no_wildcards() {
        for permission in permissions() {
            assert!(!permission.reason.is_empty(), "{permission:?}");
            assert!(!permission.verbs.is_empty(), "{permission:?}");
            assert!(!permission.verbs.contains(&"*"), "{permission:?}");
        }
    }
}
