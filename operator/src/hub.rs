//! Hugging Face sources: a branch or tag is resolved to its commit once, by the operator, and
//! kept in `status.huggingFace`; every pod of the revision then fetches that commit. Deciding
//! whether to resolve and which commit a revision pins is pure ([`to_resolve`], [`pinned`]);
//! [`resolve`] is the one call to the Hub (`GET /api/models/{repo}/revision/{revision}`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kandle_crds::{is_commit, HuggingFaceSource, HuggingFaceStatus, ModelDeployment};
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use crate::observe::Observed;

/// How long one resolution may take before it counts as failed (and is tried again later).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(15);

/// The source whose revision needs resolving in this pass: a `huggingFace` source naming a
/// branch or tag that `status.huggingFace` does not hold yet.
pub fn to_resolve(md: &ModelDeployment) -> Option<&HuggingFaceSource> {
    let hf = md.spec.model.source.hugging_face.as_ref()?;
    (!is_commit(&hf.revision) && recorded(md, hf).is_none()).then_some(hf)
}

/// The commit `md`'s pods fetch, as `status.huggingFace` records it: `None` for other sources,
/// an error (for the status) while a branch or tag cannot be resolved.
pub fn pinned(
    md: &ModelDeployment,
    observed: &Observed,
) -> Option<Result<HuggingFaceStatus, String>> {
    let hf = md.spec.model.source.hugging_face.as_ref()?;
    let record = |commit: &str| HuggingFaceStatus {
        repo: hf.repo.clone(),
        revision: hf.revision.clone(),
        commit: commit.to_string(),
    };
    if is_commit(&hf.revision) {
        return Some(Ok(record(&hf.revision)));
    }
    if let Some(known) = recorded(md, hf) {
        return Some(Ok(known.clone()));
    }
    Some(match &observed.hub_resolution {
        Some(Ok(commit)) => Ok(record(commit)),
        Some(Err(problem)) => Err(problem.clone()),
        None => Err(format!(
            "spec.model.source.huggingFace: revision {:?} of {} is not resolved to a commit yet",
            hf.revision, hf.repo
        )),
    })
}

/// The resolution in `md`'s status, if it is for the current repository and revision.
fn recorded<'a>(md: &'a ModelDeployment, hf: &HuggingFaceSource) -> Option<&'a HuggingFaceStatus> {
    md.status
        .as_ref()?
        .hugging_face
        .as_ref()
        .filter(|s| s.repo == hf.repo && s.revision == hf.revision && is_commit(&s.commit))
}

/// `observed` with the resolution of `md`'s branch or tag, when it needs one.
pub async fn with_resolution(
    client: &Client,
    md: &ModelDeployment,
    mut observed: Observed,
) -> Observed {
    if let Some(hf) = to_resolve(md) {
        observed.hub_resolution = Some(resolve(client, md, hf).await.map_err(|problem| {
            format!(
                "spec.model.source.huggingFace: cannot resolve revision {:?} of {} at {}: {problem}",
                hf.revision,
                hf.repo,
                hf.endpoint()
            )
        }));
    }
    observed
}

/// The Hub's answer about a revision: only its commit matters here.
#[derive(Deserialize)]
struct RevisionInfo {
    sha: String,
}

/// Asks the Hub which commit `hf.revision` names, with the token of `hf.tokenSecretRef`.
pub async fn resolve(
    client: &Client,
    md: &ModelDeployment,
    hf: &HuggingFaceSource,
) -> Result<String, String> {
    let token = match &hf.token_secret_ref {
        Some(reference) => Some(secret_value(client, md, &reference.name, &reference.key).await?),
        None => None,
    };
    let url = format!(
        "{}/api/models/{}/revision/{}",
        hf.endpoint(),
        hf.repo,
        hf.revision
    );
    let http = reqwest::Client::builder()
        .timeout(RESOLVE_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    let mut request = http.get(&url);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let code = response
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return Err(refusal(
            status.as_u16(),
            code.as_deref(),
            token.is_some(),
            hf,
        ));
    }
    let info: RevisionInfo = response
        .json()
        .await
        .map_err(|e| format!("GET {url}: unexpected answer: {e}"))?;
    if !is_commit(&info.sha) {
        return Err(format!("GET {url}: {:?} is not a commit hash", info.sha));
    }
    Ok(info.sha)
}

/// What a refusal of the Hub means for the user.
pub fn refusal(
    status: u16,
    code: Option<&str>,
    with_token: bool,
    hf: &HuggingFaceSource,
) -> String {
    match (status, code) {
        (404, Some("RevisionNotFound")) => {
            format!("revision {:?} not found in {}", hf.revision, hf.repo)
        }
        (_, Some("RepoNotFound")) => format!(
            "repository {} not found, or private and {}",
            hf.repo,
            if with_token {
                "the token cannot read it"
            } else {
                "no token was given (set tokenSecretRef)"
            }
        ),
        (401 | 403, _) if with_token => format!(
            "{status}: the token cannot read the gated model {} (request access at {}/{})",
            hf.repo,
            hf.endpoint(),
            hf.repo
        ),
        (401 | 403, _) => format!(
            "{status}: {} is gated or private and no token was given (set tokenSecretRef)",
            hf.repo
        ),
        (404, _) => format!(
            "{status}: revision {:?} of {} not found",
            hf.revision, hf.repo
        ),
        _ => format!("the Hub answered {status}"),
    }
}

/// One key of a Secret in `md`'s namespace, as text.
async fn secret_value(
    client: &Client,
    md: &ModelDeployment,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let ns = md.namespace().unwrap_or_default();
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get_opt(name)
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) if status.code == 403 => format!(
                "the operator may not read Secret {name:?} in namespace {ns:?}: to resolve a \
                 branch of a gated model, bind the ClusterRole kandle-hub-token-reader there \
                 (manifests/rbac/optional/hub-token-reader.yaml), or pin a commit"
            ),
            other => format!("cannot read Secret {name:?}: {other}"),
        })?
        .ok_or_else(|| format!("Secret {name:?} not found in namespace {ns:?}"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or_else(|| format!("Secret {name:?} has no key {key:?}"))?;
    String::from_utf8(bytes.0.clone())
        .map(|token| token.trim().to_string())
        .map_err(|_| format!("Secret {name:?}: key {key:?} is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::md;

    const COMMIT: &str = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";

    fn hub_md(revision: &str) -> ModelDeployment {
        let mut md = md("minilm").build();
        md.spec.model.source = serde_json::from_value(serde_json::json!({
            "huggingFace": {"repo": "sentence-transformers/all-MiniLM-L6-v2", "revision": revision}
        }))
        .expect("a huggingFace source");
        md
    }

    #[test]
    fn a_commit_needs_no_resolving_and_is_pinned_as_is() {
        let md = hub_md(COMMIT);
        assert!(to_resolve(&md).is_none());
        let pinned = pinned(&md, &Observed::default())
            .expect("a hub source")
            .expect("pinned");
        assert_eq!(pinned.commit, COMMIT);
    }

    #[test]
    fn a_branch_is_resolved_once_then_read_from_the_status() {
        let mut md = hub_md("main");
        assert!(to_resolve(&md).is_some());
        let observed = Observed {
            hub_resolution: Some(Ok(COMMIT.to_string())),
            ..Default::default()
        };
        let record = pinned(&md, &observed)
            .expect("a hub source")
            .expect("resolved");
        md.status = Some(kandle_crds::ModelDeploymentStatus {
            hugging_face: Some(record.clone()),
            ..Default::default()
        });
        assert!(to_resolve(&md).is_none(), "the status holds it");
        assert_eq!(pinned(&md, &Observed::default()), Some(Ok(record)));
        md.spec.model.source.hugging_face.as_mut().unwrap().revision = "v2".into();
        assert!(
            to_resolve(&md).is_some(),
            "another revision is resolved anew"
        );
    }

    #[test]
    fn an_unresolved_branch_is_an_error_for_the_status() {
        let md = hub_md("main");
        let observed = Observed {
            hub_resolution: Some(Err("the Hub answered 503".into())),
            ..Default::default()
        };
        assert_eq!(
            pinned(&md, &observed),
            Some(Err("the Hub answered 503".into()))
        );
        let waiting = pinned(&md, &Observed::default()).unwrap().unwrap_err();
        assert!(
            waiting.contains("not resolved to a commit yet"),
            "{waiting}"
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        let md = hub_md("v9");
        let hf = md.spec.model.source.hugging_face.as_ref().unwrap();
        assert_eq!(
            refusal(404, Some("RevisionNotFound"), false, hf),
            "revision \"v9\" not found in sentence-transformers/all-MiniLM-L6-v2"
        );
        assert!(refusal(401, Some("GatedRepo"), true, hf)
            .contains("the token cannot read the gated model"));
        assert!(refusal(401, Some("GatedRepo"), false, hf).contains("no token was given"));
        assert!(refusal(401, Some("RepoNotFound"), false, hf).contains("not found, or private"));
        assert_eq!(refusal(500, None, false, hf), "the Hub answered 500");
    }
}
