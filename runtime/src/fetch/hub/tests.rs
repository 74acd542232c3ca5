//! The Hub client's pure decisions: which files, which URLs, which message for a refusal.

use super::api::*;
use super::*;

fn sibling(name: &str) -> Sibling {
    Sibling {
        rfilename: name.to_string(),
        size: Some(1),
        blob_id: Some("0".repeat(40)),
        lfs: None,
    }
}

fn names(chosen: &[&Sibling]) -> Vec<String> {
    chosen.iter().map(|s| s.rfilename.clone()).collect()
}

fn defaults() -> Vec<String> {
    DEFAULT_PATTERNS.iter().map(|p| p.to_string()).collect()
}

const MINILM: &[&str] = &[
    ".gitattributes",
    "1_Pooling/config.json",
    "README.md",
    "config.json",
    "model.safetensors",
    "modules.json",
    "onnx/model.onnx",
    "onnx/config.json",
    "pytorch_model.bin",
    "tokenizer.json",
    "vocab.txt",
];

#[test]
fn the_default_patterns_take_configs_weights_tokenizers_and_pooling_only() {
    let siblings: Vec<Sibling> = MINILM.iter().map(|name| sibling(name)).collect();
    let chosen = select(&siblings, &defaults()).unwrap();
    assert_eq!(
        names(&chosen),
        [
            "1_Pooling/config.json",
            "config.json",
            "model.safetensors",
            "modules.json",
            "tokenizer.json",
            "vocab.txt"
        ]
    );
}

#[test]
fn a_star_does_not_cross_a_folder() {
    let siblings: Vec<Sibling> = MINILM.iter().map(|name| sibling(name)).collect();
    let chosen = select(&siblings, &["onnx/*".to_string()]).unwrap();
    assert_eq!(names(&chosen), ["onnx/model.onnx", "onnx/config.json"]);
    let chosen = select(&siblings, &["*.onnx".to_string()]);
    assert!(chosen.is_err());
}

#[test]
fn no_match_names_the_patterns_and_the_files_there_are() {
    let siblings = vec![sibling("README.md"), sibling("model.bin")];
    let err = select(
        &siblings,
        &["*.gguf".to_string(), "*.safetensors".to_string()],
    )
    .unwrap_err();
    assert_eq!(
        err,
        "no file matches *.gguf, *.safetensors (the repository has: README.md, model.bin)"
    );
}

#[test]
fn lfs_files_are_checked_by_sha256_the_others_by_git_blob_id() {
    let mut weights = sibling("model.safetensors");
    weights.lfs = Some(Lfs {
        sha256: "ab".repeat(32),
        size: 90,
    });
    assert_eq!(
        weights.expected().unwrap(),
        Expected::lfs(&"ab".repeat(32), 90)
    );
    assert_eq!(
        sibling("config.json").expected().unwrap(),
        Expected::git_blob(&"0".repeat(40), 1)
    );
    let bare = Sibling {
        blob_id: None,
        ..sibling("config.json")
    };
    assert!(bare.expected().is_err());
}

#[test]
fn urls_keep_the_endpoint_path_and_escape_the_revision() {
    let url = info_url("https://hub.example/mirror/", "org/name", "refs/pr/1").unwrap();
    assert_eq!(
        url.as_str(),
        "https://hub.example/mirror/api/models/org/name/revision/refs%2Fpr%2F1?blobs=true"
    );
    let url = resolve_url(
        "https://huggingface.co",
        "org/name",
        "abc",
        "1_Pooling/config.json",
    );
    assert_eq!(
        url.unwrap().as_str(),
        "https://huggingface.co/org/name/resolve/abc/1_Pooling/config.json"
    );
}

fn repo(has_token: bool) -> Repo<'static> {
    Repo {
        endpoint: "https://huggingface.co",
        id: "org/name",
        revision: "v9",
        has_token,
    }
}

fn refused(status: u16, code: Option<&str>, has_token: bool) -> String {
    let status = StatusCode::from_u16(status).unwrap();
    refusal(
        status,
        code,
        None,
        &repo(has_token),
        Some("model.safetensors"),
    )
}

#[test]
fn a_missing_revision_is_named() {
    assert_eq!(
        refused(404, Some("RevisionNotFound"), false),
        "revision \"v9\" not found in org/name"
    );
}

#[test]
fn a_missing_repository_may_be_a_private_one() {
    assert_eq!(
        refused(401, Some("RepoNotFound"), true),
        "repository org/name not found, or private and the token cannot read it"
    );
    assert_eq!(
        refused(404, Some("RepoNotFound"), false),
        "repository org/name not found, or private and no token was given (set tokenSecretRef)"
    );
}

#[test]
fn a_gated_model_says_whether_a_token_was_given() {
    let with_token = "401: the token cannot read the gated model org/name \
                      (request access at https://huggingface.co/org/name)";
    assert_eq!(refused(401, Some("GatedRepo"), true), with_token);
    assert_eq!(refused(401, None, true), with_token);
    assert_eq!(
        refused(403, Some("GatedRepo"), true),
        with_token.replacen("401", "403", 1)
    );
    assert_eq!(
        refused(401, Some("GatedRepo"), false),
        "401: org/name is gated or private and no token was given (set tokenSecretRef)"
    );
}

#[test]
fn a_missing_file_is_named_with_the_revision() {
    assert_eq!(
        refused(404, Some("EntryNotFound"), false),
        "model.safetensors not found in org/name at revision \"v9\""
    );
}

#[test]
fn other_refusals_carry_the_status_and_the_hubs_message() {
    let status = StatusCode::BAD_REQUEST;
    let message = refusal(status, None, Some("Invalid rev id"), &repo(false), None);
    assert_eq!(
        message,
        "HTTP 400 Bad Request from https://huggingface.co for org/name at revision \"v9\": Invalid rev id"
    );
}
