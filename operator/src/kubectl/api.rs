//! What `kubectl kandle` reads and writes through a `kube::Client`: each command reads the
//! objects, asks the pure modules what to show or do, and makes at most one write, under the
//! field manager [`FIELD_MANAGER`].

use futures::{future, stream, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::Pod;
use kandle_crds::{labels, ModelDeployment, RolloutStrategy};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::{json, Value};

use super::{render, undo as decide, verbs, Error, FIELD_MANAGER};
use crate::command::{annotation_value, Command};
use crate::plan::KnownRevision;

/// Reads the ModelDeployment; [`Error::NotFound`] when it does not exist.
pub async fn get(client: &Client, namespace: &str, name: &str) -> Result<ModelDeployment, Error> {
    get_raw(client, namespace, name).await.map(|(_, md)| md)
}

/// Reads the ModelDeployment as stored (JSON, with only the fields the server has) and typed.
async fn get_raw(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(Value, ModelDeployment), Error> {
    let resource = ApiResource::erase::<ModelDeployment>(&());
    let object = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource)
        .get_opt(name)
        .await
        .map_err(|source| Error::GetModelDeployment {
            name: name.to_string(),
            namespace: namespace.to_string(),
            source,
        })?
        .ok_or_else(|| Error::NotFound {
            name: name.to_string(),
            namespace: namespace.to_string(),
        })?;
    let raw = serde_json::to_value(&object).map_err(|source| Error::DecodeModelDeployment {
        name: name.to_string(),
        source,
    })?;
    let md =
        serde_json::from_value(raw.clone()).map_err(|source| Error::DecodeModelDeployment {
            name: name.to_string(),
            source,
        })?;
    Ok((raw, md))
}

fn children_of(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{}={name}", labels::MODEL_DEPLOYMENT))
}

async fn list<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &'static str,
) -> Result<Vec<K>, Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&children_of(name))
        .await
        .map(|list| list.items)
        .map_err(|source| Error::ListChildren {
            what,
            name: name.to_string(),
            source,
        })
}

/// The `status` view of the named ModelDeployment, with its Deployments and pods.
pub async fn status(client: &Client, namespace: &str, name: &str) -> Result<String, Error> {
    let md = get(client, namespace, name).await?;
    let deployments: Vec<Deployment> = list(client, namespace, name, "Deployments").await?;
    let pods: Vec<Pod> = list(client, namespace, name, "pods").await?;
    Ok(render::status(&md, &deployments, &pods))
}

/// The `history` view of the named ModelDeployment.
pub async fn history(client: &Client, namespace: &str, name: &str) -> Result<String, Error> {
    Ok(render::history(&get(client, namespace, name).await?))
}

/// Asks the operator for `command` by merge-patching the `kandle.dev/command` annotation with
/// the value for `id` (unique per invocation: the binary uses the time in nanoseconds). Refused,
/// without a write, when the command does not apply to where the canary stands. Returns what
/// was asked and what the operator will do.
pub async fn command(
    client: &Client,
    namespace: &str,
    name: &str,
    command: Command,
    id: &str,
) -> Result<String, Error> {
    let md = get(client, namespace, name).await?;
    let expected = verbs::check(&md, command).map_err(Error::Refused)?;
    let value = annotation_value(command, id);
    let patch = json!({"metadata": {"annotations": {labels::COMMAND_ANNOTATION: value}}});
    Api::<ModelDeployment>::namespaced(client.clone(), namespace)
        .patch(name, &write_params(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::PatchCommand {
            name: name.to_string(),
            source,
        })?;
    Ok(format!(
        "modeldeployment {name:?} in namespace {namespace:?}: asked for `{command}` ({}={value}).\n{expected}\n",
        labels::COMMAND_ANNOTATION
    ))
}

fn write_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// Options of `undo`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UndoOptions {
    /// The revision number to go back to (default: the previous stable revision).
    pub to_revision: Option<i64>,
    /// Patch even when a GitOps tool owns the spec.
    pub yes: bool,
}

/// What `undo` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undone {
    /// Set when a GitOps tool manages the spec and `--yes` overrode the refusal (the binary
    /// prints it to stderr).
    pub warning: Option<String>,
    /// What was changed and what the operator will do.
    pub said: String,
}

/// Puts the spec parts of a recorded revision back (`spec.model`, `runtime`, `resources`,
/// `scheduling`) with a JSON Patch, after checking who manages the spec.
pub async fn undo(
    client: &Client,
    namespace: &str,
    name: &str,
    options: &UndoOptions,
) -> Result<Undone, Error> {
    let (current, md) = get_raw(client, namespace, name).await?;
    let objects: Vec<ControllerRevision> =
        list(client, namespace, name, "ControllerRevisions").await?;
    let known: Vec<KnownRevision> = objects
        .iter()
        .filter_map(KnownRevision::from_object)
        .collect();
    let target = decide::pick(&md, &known, options.to_revision)?;
    let snapshot = decide::snapshot(target)?;
    if decide::matches(&md, snapshot) {
        return Err(Error::AlreadyAtRevision {
            name: name.to_string(),
            revision: target.name.clone(),
            number: target.number,
        });
    }
    let managers = decide::gitops_managers(&md);
    let warning = (!managers.is_empty()).then(|| {
        format!(
            "the spec of modeldeployment {name:?} is managed by {} (GitOps): it will revert \
             this change at its next sync. Revert the change in Git instead (`git revert` the \
             commit that brought the current spec) and let it sync",
            managers.join(", ")
        )
    });
    if let (Some(warning), false) = (&warning, options.yes) {
        return Err(Error::GitOpsManaged {
            warning: warning.clone(),
        });
    }
    let mut out = String::new();

    let patch = decide::spec_patch(&current, snapshot)?;
    let url = format!(
        "{}/{name}?fieldManager={FIELD_MANAGER}",
        Api::<ModelDeployment>::namespaced(client.clone(), namespace).resource_url()
    );
    // kube's typed JSON Patch needs the `jsonpatch` feature and crate; the request is small
    // enough to send as it is.
    let request = http::Request::patch(url)
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(patch.to_string().into_bytes())
        .map_err(|e| Error::PatchSpec {
            name: name.to_string(),
            source: kube::Error::HttpError(e),
        })?;
    let patched: ModelDeployment =
        client
            .request(request)
            .await
            .map_err(|source| Error::PatchSpec {
                name: name.to_string(),
                source,
            })?;

    let version = target
        .model_version()
        .map(|v| format!(", model {v}"))
        .unwrap_or_default();
    out.push_str(&format!(
        "modeldeployment {name:?} in namespace {namespace:?}: spec.model, spec.runtime, \
         spec.resources and spec.scheduling set to revision {} ({}{version}); generation {}.\n",
        target.number,
        target.name,
        patched.metadata.generation.unwrap_or_default()
    ));
    let status = md.status.clone().unwrap_or_default();
    let strategy = match md.spec.rollout.strategy {
        RolloutStrategy::Rolling => "rolling",
        RolloutStrategy::Canary => "canary",
    };
    let next = if status.stable_revision.as_deref() == Some(target.name.as_str()) {
        match render::canary_revision(&status) {
            Some(canary) => format!(
                "The spec is the stable revision's again: the operator drops {canary} and \
                 {} keeps serving.",
                target.name
            ),
            None => format!(
                "{} is the stable revision: the operator keeps it.",
                target.name
            ),
        }
    } else {
        format!(
            "The operator rolls {} out again as the new target ({strategy} rollout).",
            target.name
        )
    };
    out.push_str(&next);
    out.push('\n');
    if let (None, Some(canary), Some(stable)) = (
        options.to_revision,
        render::canary_revision(&status),
        status.stable_revision.as_deref(),
    ) {
        if stable != target.name {
            out.push_str(&format!(
                "Note: canary {canary} was in progress; undo went back past the stable revision \
                 {stable}. To drop only the canary, `kubectl kandle abort {name}`.\n"
            ));
        }
    }
    Ok(Undone { warning, said: out })
}

/// Which watched kind a change came from.
#[derive(Clone, Copy)]
enum Source {
    ModelDeployment = 0,
    Deployments = 1,
    Pods = 2,
}

/// The `status` view, again each time the ModelDeployment, its Deployments or its pods change
/// (identical views are skipped); the first once all three are listed. Fails at once when the
/// ModelDeployment does not exist; a failing watch is retried with backoff and reported as an
/// item. The stream ends only if the watches do.
pub async fn watch(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<impl Stream<Item = Result<String, Error>> + Send + 'static, Error> {
    get(client, namespace, name).await?;
    let (mds, md_writer) = reflector::store::<ModelDeployment>();
    let (deployments, deployment_writer) = reflector::store::<Deployment>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let by_label =
        watcher::Config::default().labels(&format!("{}={name}", labels::MODEL_DEPLOYMENT));
    let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
    fn tagged<K>(
        source: Source,
        events: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    ) -> stream::BoxStream<'static, Result<(Source, bool), watcher::Error>> {
        events
            .map_ok(move |event| (source, matches!(event, watcher::Event::InitDone)))
            .boxed()
    }
    let changes = stream::select_all([
        tagged(
            Source::ModelDeployment,
            watcher(Api::namespaced(client.clone(), namespace), by_name)
                .default_backoff()
                .reflect(md_writer),
        ),
        tagged(
            Source::Deployments,
            watcher(Api::namespaced(client.clone(), namespace), by_label.clone())
                .default_backoff()
                .reflect(deployment_writer),
        ),
        tagged(
            Source::Pods,
            watcher(Api::namespaced(client.clone(), namespace), by_label)
                .default_backoff()
                .reflect(pod_writer),
        ),
    ]);
    let (name, namespace) = (name.to_string(), namespace.to_string());
    let mut listed = [false; 3];
    let mut last: Option<String> = None;
    Ok(changes.filter_map(move |change| {
        let item = match change {
            Err(source) => Some(Err(Error::Watch {
                name: name.clone(),
                source,
            })),
            Ok((source, init_done)) => {
                listed[source as usize] |= init_done;
                let view = listed.iter().all(|l| *l).then(|| {
                    let md = mds.state().into_iter().find(|md| md.name_any() == name);
                    match md {
                        Some(md) => {
                            let deployments: Vec<Deployment> =
                                deployments.state().iter().map(|d| (**d).clone()).collect();
                            let pods: Vec<Pod> =
                                pods.state().iter().map(|p| (**p).clone()).collect();
                            render::status(&md, &deployments, &pods)
                        }
                        None => format!(
                            "modeldeployment {name:?} not found in namespace {namespace:?} \
                             (deleted?); waiting for it\n"
                        ),
                    }
                });
                match view {
                    Some(view) if last.as_ref() != Some(&view) => {
                        last = Some(view.clone());
                        Some(Ok(view))
                    }
                    _ => None,
                }
            }
        };
        future::ready(item)
    }))
}
