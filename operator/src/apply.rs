//! Acts on a [`Plan`]: first the status (when the plan says to write it) through the status
//! subresource, conditional on the `ModelDeployment`'s resourceVersion, so a plan made from a
//! stale cached object writes nothing at all; then server-side apply of every child (field manager `kandle-operator`, forced),
//! deletion of children no longer wanted (only the very object observed, by UID), then the
//! planned events. No decisions are made here.

use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kandle_crds::{labels, ModelDeployment};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

use crate::config::{CONTROLLER_NAME, FIELD_MANAGER};
use crate::error::Error;
use crate::plan::{http_route_resource, ChildKind, ChildRef, EventKind, Plan};

/// Applies `plan` and publishes its events with a recorder made for this call.
pub async fn apply(client: &Client, md: &ModelDeployment, plan: &Plan) -> Result<(), Error> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.to_string(),
            instance: None,
        },
    );
    apply_with(client, &recorder, md, plan).await
}

/// Applies `plan` and publishes its events through `recorder`.
pub async fn apply_with(
    client: &Client,
    recorder: &Recorder,
    md: &ModelDeployment,
    plan: &Plan,
) -> Result<(), Error> {
    let name = md.name_any();
    let ns = md
        .namespace()
        .ok_or_else(|| Error::MissingNamespace { name: name.clone() })?;
    let key = format!("{ns}/{name}");

    // The resourceVersion makes the write conditional: a pass planned from a cached object that
    // has since changed gets 409 before it touches any child, instead of writing children (a
    // retired revision scaled back up) and a status (and condition times) derived from an
    // older object.
    if plan.write_status {
        let status = serde_json::json!({
            "apiVersion": ModelDeployment::api_version(&()),
            "kind": ModelDeployment::kind(&()),
            "metadata": { "resourceVersion": md.resource_version() },
            "status": plan.status,
        });
        Api::<ModelDeployment>::namespaced(client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&status),
            )
            .await
            .map_err(|source| Error::ApplyStatus {
                md: key.clone(),
                source,
            })?;
    }

    // A command the status now records as done is removed, only if it is still that value.
    let done = plan.status.last_command.as_deref();
    if let Some(value) = md
        .annotations()
        .get(labels::COMMAND_ANNOTATION)
        .filter(|v| Some(v.as_str()) == done)
    {
        let path = format!(
            "/metadata/annotations/{}",
            labels::COMMAND_ANNOTATION
                .replace('~', "~0")
                .replace('/', "~1")
        );
        let ops: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "test", "path": path, "value": value},
            {"op": "remove", "path": path},
        ]))
        .expect("a valid JSON patch");
        let result = Api::<ModelDeployment>::namespaced(client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Json::<()>(ops))
            .await;
        match result {
            // Changed since (a newer command): the next pass reads it.
            Err(kube::Error::Api(status)) if status.code == 422 || status.code == 409 => {}
            Err(source) => {
                return Err(Error::ApplyStatus {
                    md: key.clone(),
                    source,
                })
            }
            Ok(_) => {}
        }
    }

    // Record revisions before anything serves them.
    for revision in &plan.revisions {
        let child = revision.name_any();
        ssa::<ControllerRevision>(client, &ns, &child, revision)
            .await
            .map_err(|source| Error::ApplyRevision {
                name: child,
                source,
            })?;
    }
    for deployment in &plan.deployments {
        let child = deployment.name_any();
        ssa::<Deployment>(client, &ns, &child, deployment)
            .await
            .map_err(|source| Error::ApplyDeployment {
                name: child,
                source,
            })?;
    }
    if let Some(service) = &plan.service {
        let child = service.name_any();
        ssa::<Service>(client, &ns, &child, service)
            .await
            .map_err(|source| Error::ApplyService {
                name: child,
                source,
            })?;
    }
    for service in &plan.revision_services {
        let child = service.name_any();
        ssa::<Service>(client, &ns, &child, service)
            .await
            .map_err(|source| Error::ApplyService {
                name: child,
                source,
            })?;
    }
    if let Some(route) = &plan.route {
        let child = route.name_any();
        Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &http_route_resource())
            .patch(
                &child,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(route),
            )
            .await
            .map_err(|source| Error::ApplyRoute {
                name: child,
                source,
            })?;
    }
    if let Some(pdb) = &plan.pdb {
        let child = pdb.name_any();
        ssa::<PodDisruptionBudget>(client, &ns, &child, pdb)
            .await
            .map_err(|source| Error::ApplyPdb {
                name: child,
                source,
            })?;
    }
    if let Some(hpa) = &plan.hpa {
        let child = hpa.name_any();
        ssa::<HorizontalPodAutoscaler>(client, &ns, &child, hpa)
            .await
            .map_err(|source| Error::ApplyHpa {
                name: child,
                source,
            })?;
    }
    for orphan in &plan.delete {
        let result = match orphan.kind {
            ChildKind::Deployment => delete::<Deployment>(client, &ns, orphan).await,
            ChildKind::ControllerRevision => {
                delete::<ControllerRevision>(client, &ns, orphan).await
            }
            ChildKind::Service => delete::<Service>(client, &ns, orphan).await,
            ChildKind::PodDisruptionBudget => {
                delete::<PodDisruptionBudget>(client, &ns, orphan).await
            }
            ChildKind::HorizontalPodAutoscaler => {
                delete::<HorizontalPodAutoscaler>(client, &ns, orphan).await
            }
            ChildKind::HttpRoute => {
                let api = Api::<DynamicObject>::namespaced_with(
                    client.clone(),
                    &ns,
                    &http_route_resource(),
                );
                delete_with(api, orphan).await
            }
        };
        result.map_err(|source| Error::DeleteOrphan {
            kind: orphan.kind.as_str(),
            name: orphan.name.clone(),
            source,
        })?;
    }

    let reference = md.object_ref(&());
    for planned in &plan.events {
        let event = Event {
            type_: match planned.kind {
                EventKind::Normal => EventType::Normal,
                EventKind::Warning => EventType::Warning,
            },
            reason: planned.reason.to_string(),
            note: Some(planned.message.clone()),
            action: planned.action.to_string(),
            secondary: None,
        };
        recorder
            .publish(&event, &reference)
            .await
            .map_err(|source| Error::PublishEvent {
                md: key.clone(),
                reason: planned.reason.to_string(),
                source,
            })?;
    }
    Ok(())
}

async fn ssa<K>(client: &Client, ns: &str, name: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await
}

/// Deletes a child, only the object observed (its UID); one already gone, or replaced by
/// another object of the same name since, is left alone.
async fn delete<K>(client: &Client, ns: &str, child: &ChildRef) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    delete_with(Api::<K>::namespaced(client.clone(), ns), child).await
}

async fn delete_with<K>(api: Api<K>, child: &ChildRef) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let params = DeleteParams {
        preconditions: child.uid.clone().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&child.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}
