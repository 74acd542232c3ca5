//! Model sources on a real control plane, with the real operator under its own RBAC: the
//! quickstart example fetched from a Hugging Face Hub (a local server speaking the Hub's API,
//! seeded with the real model) serves embeddings on a namespace with nothing else in it; a
//! branch is resolved once to its commit; a revision the Hub does not have and a gated model
//! without a token are reported with the fetcher's or the Hub's words while the stable
//! revision keeps serving. Skips (saying why) without a control plane; see `kandle_tests::e2e`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Secret};
use kandle_crds::conditions::reasons;
use kandle_crds::{HuggingFaceSource, ModelDeployment, SecretKeyRef};
use kandle_tests::e2e::{embed, install, pod_ip, E2e};
use kandle_tests::hub_server::{HubRepo, HubServer};
use kube::api::PostParams;
use serde_json::json;

const REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The commit `manifests/examples/quickstart.yaml` pins.
const QUICKSTART_COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";
/// What `main` names on the test Hub.
const MAIN_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A Hub serving the real all-MiniLM-L6-v2 folder at the quickstart's commit and at `main`;
/// gated behind `token` if given.
async fn hub(token: Option<&str>) -> HubServer {
    let model = kandle_tests::fetch_cli::model_dir();
    let repos = [
        HubRepo::from_dir(REPO, QUICKSTART_COMMIT, &model),
        HubRepo::from_dir(REPO, MAIN_COMMIT, &model).with_branch("main"),
    ];
    let repos = repos.into_iter().map(|repo| match token {
        Some(token) => repo.gated(token),
        None => repo,
    });
    HubServer::start(repos.collect()).await
}

/// The Hub source of `md`.
fn hub_source(md: &mut ModelDeployment) -> &mut HuggingFaceSource {
    let source = md.spec.model.source.hugging_face.as_mut();
    source.expect("a Hub source")
}

/// `manifests/examples/quickstart.yaml` as written, only pointed at `hub`.
fn quickstart(hub: &HubServer) -> ModelDeployment {
    let mut md = E2e::example("quickstart.yaml").expect("the quickstart parses");
    let source = hub_source(&mut md);
    source.endpoint = Some(hub.url());
    md
}

/// The fetch init container of revision `name`'s Deployment.
async fn fetcher(e2e: &E2e, name: &str) -> Container {
    let deployment = e2e.api::<Deployment>().get(name).await;
    let deployment = e2e.expect(deployment, "the revision's Deployment").await;
    let spec = deployment.spec.and_then(|s| s.template.spec);
    spec.and_then(|s| s.init_containers)
        .and_then(|c| c.into_iter().next())
        .expect("a fetch init container")
}

fn flag(container: &Container, name: &str) -> Option<String> {
    let args = container.args.as_deref().unwrap_or_default();
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).cloned()
}

/// What an administrator does to let the operator resolve gated branches in the test's
/// namespace: apply the optional ClusterRole and bind it there to the operator.
async fn bind_hub_token_reader(e2e: &E2e) {
    let path = kandle_tests::e2e::cluster::workspace()
        .join("manifests/rbac/optional/hub-token-reader.yaml");
    let text = std::fs::read_to_string(&path).expect("the optional ClusterRole");
    let role: serde_json::Value = serde_yaml::from_str(&text).expect("YAML");
    let applied = install::apply(&e2e.client, &role).await;
    e2e.expect(applied, "the ClusterRole applies").await;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "kandle-hub-token-reader", "namespace": e2e.namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "kandle-hub-token-reader",
        },
        "subjects": [{
            "kind": "ServiceAccount",
            "name": "kandle-operator",
            "namespace": "kandle-system",
        }],
    });
    let bound = install::apply(&e2e.client, &binding).await;
    e2e.expect(bound, "the RoleBinding applies").await;
}

#[tokio::test]
async fn the_quickstart_serves_a_model_fetched_from_the_hub() {
    let Some(e2e) = E2e::start("hub-quickstart").await else {
        return;
    };
    let hub = hub(None).await;
    let (md, stable) = e2e.apply_until_ready(&quickstart(&hub)).await;

    let init = fetcher(&e2e, &stable).await;
    e2e.ensure(
        flag(&init, "--revision").as_deref() == Some(QUICKSTART_COMMIT),
        format!("the pods fetch the pinned commit: {:?}", init.args),
    )
    .await;
    let recorded = md.status.as_ref().and_then(|s| s.hugging_face.clone());
    e2e.ensure(
        recorded.as_ref().map(|r| r.commit.as_str()) == Some(QUICKSTART_COMMIT),
        format!("status.huggingFace records the commit: {recorded:?}"),
    )
    .await;
    let pods = e2e.wait_ready_pods(&stable, 1).await;
    let pods = e2e.expect(pods, "the quickstart's pod is ready").await;
    let vector = embed(
        &pod_ip(&pods[0]).unwrap_or_default(),
        "kandle on a fresh cluster",
    )
    .await;
    let vector = e2e.expect(vector, "the pod answers").await;
    e2e.ensure(vector.len() == 384, format!("{} values", vector.len()))
        .await;
    let fetched = hub
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("model.safetensors"))
        .count();
    e2e.ensure(fetched >= 1, "the weights came from the Hub")
        .await;
}

/// `md` asking for `revision` of its Hub repository.
fn at_revision(md: &ModelDeployment, revision: &str) -> ModelDeployment {
    let mut md = md.clone();
    hub_source(&mut md).revision = revision.to_string();
    md
}

#[tokio::test]
async fn a_branch_is_resolved_once_and_revisions_the_hub_lacks_are_reported() {
    let Some(e2e) = E2e::start("hub-branch").await else {
        return;
    };
    let hub = hub(None).await;
    let (md, stable) = e2e
        .apply_until_ready(&at_revision(&quickstart(&hub), "main"))
        .await;
    let recorded = md.status.as_ref().and_then(|s| s.hugging_face.clone());
    let pair = recorded
        .as_ref()
        .map(|r| (r.revision.as_str(), r.commit.as_str()));
    e2e.ensure(
        pair == Some(("main", MAIN_COMMIT)),
        format!("main resolved and recorded: {recorded:?}"),
    )
    .await;
    let init = fetcher(&e2e, &stable).await;
    e2e.ensure(
        flag(&init, "--revision").as_deref() == Some(MAIN_COMMIT),
        format!(
            "the pods fetch main's commit, not the branch: {:?}",
            init.args
        ),
    )
    .await;

    // A branch the Hub does not have: the operator's resolution says so, nothing rolls.
    let applied = e2e.apply(&at_revision(&md, "v9")).await;
    e2e.expect(applied, "revision v9 applies").await;
    let (degraded, _) = e2e
        .wait_degraded(
            "quickstart",
            reasons::MODEL_FETCH_FAILED,
            "revision \"v9\" not found",
        )
        .await;
    let serving = degraded
        .status
        .as_ref()
        .and_then(|s| s.stable_revision.as_deref());
    e2e.ensure(serving == Some(&stable), "the stable revision stays")
        .await;

    // A commit the Hub does not have needs no resolving: the pods' fetcher reports it.
    let commit = "f".repeat(40);
    let applied = e2e.apply(&at_revision(&md, &commit)).await;
    e2e.expect(applied, "an absent commit applies").await;
    let (_, said) = e2e
        .wait_degraded("quickstart", reasons::MODEL_FETCH_FAILED, "fetch-model")
        .await;
    e2e.ensure(
        said.contains(&format!("revision \"{commit}\" not found")),
        format!("the fetcher's words in the message: {said}"),
    )
    .await;
    let pods = e2e.wait_ready_pods(&stable, 1).await;
    let pods = e2e.expect(pods, "the stable revision still serves").await;
    let answer = embed(&pod_ip(&pods[0]).unwrap_or_default(), "still serving").await;
    e2e.expect(answer, "a stable pod answers").await;
}

#[tokio::test]
async fn a_gated_model_is_resolved_with_the_token_from_its_secret() {
    let Some(e2e) = E2e::start("hub-gated").await else {
        return;
    };
    let token = "hf_e2e_token";
    let hub = hub(Some(token)).await;
    let mut md = at_revision(&quickstart(&hub), "main");
    e2e.expect(e2e.apply(&md).await, "the gated model applies")
        .await;
    e2e.wait_degraded(
        "quickstart",
        reasons::MODEL_FETCH_FAILED,
        "no token was given",
    )
    .await;

    // The pods get the token from the Secret; the operator needs it to resolve main.
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "hf-token"},
        "stringData": {"token": token},
    }))
    .expect("a Secret");
    let created = e2e
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await;
    e2e.expect(created, "the token Secret is created").await;
    let source = hub_source(&mut md);
    source.token_secret_ref = Some(SecretKeyRef {
        name: "hf-token".into(),
        key: "token".into(),
    });
    e2e.expect(e2e.apply(&md).await, "the token reference applies")
        .await;
    // By default the operator may read no Secret: the message says what an administrator can do.
    e2e.wait_degraded(
        "quickstart",
        reasons::MODEL_FETCH_FAILED,
        "kandle-hub-token-reader",
    )
    .await;
    bind_hub_token_reader(&e2e).await;
    let resolved = e2e
        .wait_md("quickstart", "main resolved with the token", |md| {
            md.status
                .as_ref()
                .and_then(|s| s.hugging_face.as_ref())
                .is_some_and(|h| h.commit == MAIN_COMMIT)
        })
        .await;
    e2e.expect(resolved, "the gated branch is resolved").await;
    let fetching_main = e2e
        .eventually("a revision fetching main's commit", || async {
            let deployments = e2e.api::<Deployment>().list(&Default::default()).await?;
            Ok(deployments.items.into_iter().find_map(|d| {
                let init = d.spec?.template.spec?.init_containers?.into_iter().next()?;
                (flag(&init, "--revision").as_deref() == Some(MAIN_COMMIT)).then_some(init)
            }))
        })
        .await;
    let init = e2e
        .expect(fetching_main, "the new revision's Deployment")
        .await;
    let token_env = init.env.iter().flatten().find(|e| e.name == "HF_TOKEN");
    let from = token_env
        .and_then(|e| e.value_from.as_ref())
        .and_then(|v| v.secret_key_ref.as_ref())
        .map(|r| (r.name.clone(), r.key.clone()));
    e2e.ensure(
        from == Some(("hf-token".into(), "token".into())),
        format!("HF_TOKEN comes from the Secret: {:?}", init.env),
    )
    .await;
}
