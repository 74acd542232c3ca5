//! The views `kubectl kandle` prints, as pure functions of the objects read: `status` (the
//! rollout at a glance) and `history` (the revisions, newest last). Nothing here reads a clock
//! or the API, so `status --watch` re-renders the same text for the same objects and the views
//! are unit-tested from built objects.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kandle_crds::{
    duration_seconds, labels, AnalysisResult, CanaryPhase, CanaryStatus, ModelDeployment,
    ModelDeploymentStatus, RevisionOutcome, RevisionRecord, RolloutStrategy, Task,
};
use kube::ResourceExt;

/// Left-aligned columns separated by two spaces, under upper-case headers, as `kubectl get`
/// prints them; each line starts with `indent`.
pub fn table(indent: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::from(indent);
        for (i, cell) in row.iter().enumerate() {
            let width = widths.get(i).copied().unwrap_or(0);
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A timestamp (of a `Time` or a `MicroTime`) as `2025-11-26T10:00:00Z` (UTC, whole seconds).
pub fn time(t: &Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A share (0.0083) in percent with two decimals (`0.83%`).
pub fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

/// A latency in seconds as `180ms` below a second, else `1.25s`; `-` when unknown.
pub fn latency(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".to_string(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) => format!("{s:.2}s"),
    }
}

/// The camelCase name of an outcome, as written in the status (`rolledBack`).
pub fn outcome(outcome: RevisionOutcome) -> &'static str {
    match outcome {
        RevisionOutcome::Progressing => "progressing",
        RevisionOutcome::Stable => "stable",
        RevisionOutcome::Superseded => "superseded",
        RevisionOutcome::Aborted => "aborted",
        RevisionOutcome::RolledBack => "rolledBack",
        RevisionOutcome::Failed => "failed",
    }
}

/// The name of a canary phase, as written in the status.
pub fn phase(phase: CanaryPhase) -> &'static str {
    match phase {
        CanaryPhase::Progressing => "Progressing",
        CanaryPhase::Paused => "Paused",
        CanaryPhase::WaitingForPromote => "WaitingForPromote",
        CanaryPhase::Promoting => "Promoting",
        CanaryPhase::Aborted => "Aborted",
    }
}

/// The newest history record of the revision named `revision`.
pub fn record<'a>(status: &'a ModelDeploymentStatus, revision: &str) -> Option<&'a RevisionRecord> {
    status
        .history
        .iter()
        .filter(|r| r.revision == revision)
        .max_by_key(|r| r.number)
}

/// `name (revision 3, model v2)`, with what the history knows of it.
fn revision_label(status: &ModelDeploymentStatus, revision: &str) -> String {
    match record(status, revision) {
        Some(r) => match &r.model_version {
            Some(version) => format!("{revision} (revision {}, model {version})", r.number),
            None => format!("{revision} (revision {})", r.number),
        },
        None => revision.to_string(),
    }
}

/// The canary revision: `status.canary.revision`, else `status.canaryRevision`.
pub fn canary_revision(status: &ModelDeploymentStatus) -> Option<&str> {
    status
        .canary
        .as_ref()
        .map(|c| c.revision.as_str())
        .or(status.canary_revision.as_deref())
}

/// The `status` view of a ModelDeployment, from it, its Deployments and its pods: model,
/// stable and canary revisions, the steps with the current one marked, the latest analyses,
/// ready pods per revision and the conditions.
pub fn status(md: &ModelDeployment, deployments: &[Deployment], pods: &[Pod]) -> String {
    let empty = ModelDeploymentStatus::default();
    let status = md.status.as_ref().unwrap_or(&empty);
    let spec = &md.spec;
    let mut out = String::new();
    let mut field = |label: &str, value: &str| {
        let _ = writeln!(out, "{:<12}{value}", format!("{label}:"));
    };
    field("Name", &md.name_any());
    field("Namespace", &md.namespace().unwrap_or_default());
    let mut model = match &spec.model.version {
        Some(version) => format!("{} {version}", spec.model.name),
        None => spec.model.name.clone(),
    };
    // Embedding, the default, is not named.
    match spec.model.task {
        Task::Embedding => {}
        Task::Generation => model.push_str(" (generation)"),
        Task::Classification => model.push_str(" (classification: not served)"),
    }
    field("Model", &model);
    if let Some(hub) = &status.hugging_face {
        let commit = &hub.commit[..hub.commit.len().min(12)];
        let pinned = if hub.revision == hub.commit {
            format!("{}@{commit}", hub.repo)
        } else {
            format!("{}@{} (commit {commit})", hub.repo, hub.revision)
        };
        field("Source", &format!("huggingFace {pinned}"));
    }
    let generation = match (md.metadata.generation, status.observed_generation) {
        (Some(g), Some(o)) if g == o => format!("{g} (observed)"),
        (Some(g), Some(o)) => format!("{g} (operator has seen {o})"),
        (Some(g), None) => format!("{g} (not observed yet)"),
        (None, _) => "-".to_string(),
    };
    field("Generation", &generation);
    let strategy = match spec.rollout.strategy {
        RolloutStrategy::Rolling => "rolling".to_string(),
        RolloutStrategy::Canary => format!("canary, {} steps", spec.rollout.steps.len()),
    };
    field(
        "Strategy",
        &if spec.paused {
            format!("{strategy} (spec.paused: the operator changes nothing)")
        } else {
            strategy
        },
    );
    field(
        "Ready",
        &status.ready.clone().unwrap_or_else(|| "-".to_string()),
    );
    field(
        "Stable",
        &status
            .stable_revision
            .as_deref()
            .map_or_else(|| "none".to_string(), |r| revision_label(status, r)),
    );
    match (&status.canary, canary_revision(status)) {
        (Some(canary), _) => {
            field("Canary", &revision_label(status, &canary.revision));
            field("Phase", &canary_phase_line(md, canary));
            field("Weight", &weight_line(md, canary));
            if !canary.message.is_empty() {
                field("Message", &canary.message);
            }
        }
        (None, Some(revision)) => {
            field("Rolling out", &revision_label(status, revision));
        }
        (None, None) => field("Canary", "none"),
    }
    if let Some(command) = pending_command(md) {
        field("Command", &format!("{command} (not acted on yet)"));
    } else if let Some(command) = &status.last_command {
        field("Command", &format!("{command} (acted on)"));
    }

    if spec.rollout.strategy == RolloutStrategy::Canary && !spec.rollout.steps.is_empty() {
        out.push_str("Steps:\n");
        out.push_str(&steps_table(md, status.canary.as_ref()));
    }

    let analyses: Vec<&AnalysisResult> = match &status.canary {
        Some(canary) if !canary.analyses.is_empty() => canary.analyses.iter().collect(),
        _ => status.last_analysis.iter().collect(),
    };
    if !analyses.is_empty() {
        let failures = status.canary.as_ref().map_or(0, |c| c.failures);
        let limit = spec.rollout.analysis.as_ref().map(|a| a.failure_limit);
        let budget = match limit {
            Some(limit) => format!("{failures} failed, failureLimit {limit}"),
            None => format!("{failures} failed"),
        };
        let _ = writeln!(out, "Analysis ({budget}; newest last):");
        out.push_str(&analyses_table(&analyses));
    }

    out.push_str("Pods:\n");
    let rows = pod_rows(md, deployments, pods);
    if rows.is_empty() {
        out.push_str("  none\n");
    } else {
        out.push_str(&table(
            "  ",
            &["REVISION", "ROLE", "MODEL", "DESIRED", "READY"],
            &rows,
        ));
    }

    out.push_str("Conditions:\n");
    if status.conditions.is_empty() {
        out.push_str("  none reported yet\n");
    } else {
        let rows: Vec<Vec<String>> = status
            .conditions
            .iter()
            .map(|c| {
                vec![
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.message.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            "  ",
            &["TYPE", "STATUS", "REASON", "MESSAGE"],
            &rows,
        ));
    }
    out
}

/// The `kandle.dev/command` annotation, while the operator has not recorded it in
/// `status.lastCommand` yet.
pub fn pending_command(md: &ModelDeployment) -> Option<&str> {
    crate::command::pending(md)
}

/// `Progressing, step 2 of 3`.
fn canary_phase_line(md: &ModelDeployment, canary: &CanaryStatus) -> String {
    let steps = md.spec.rollout.steps.len();
    match canary.phase {
        CanaryPhase::Promoting => "Promoting (past every step)".to_string(),
        p => format!("{}, step {} of {steps}", phase(p), canary.step + 1),
    }
}

/// `48% effective (step 2 wants 50%; stable 2 replicas, canary 2 replicas)`.
fn weight_line(md: &ModelDeployment, canary: &CanaryStatus) -> String {
    let wanted = match canary.phase {
        CanaryPhase::Promoting => Some(100),
        CanaryPhase::Aborted => Some(0),
        _ => usize::try_from(canary.step)
            .ok()
            .and_then(|i| md.spec.rollout.steps.get(i))
            .map(|s| s.weight),
    };
    let replicas = format!(
        "stable {} replicas, canary {} replicas",
        canary.stable_replicas, canary.canary_replicas
    );
    match wanted {
        Some(w) => format!(
            "{}% effective ({w}% wanted; {replicas})",
            canary.effective_weight
        ),
        None => format!("{}% effective ({replicas})", canary.effective_weight),
    }
}

/// The steps of `spec.rollout.steps`, the current one marked `>` (`x` where it was aborted).
fn steps_table(md: &ModelDeployment, canary: Option<&CanaryStatus>) -> String {
    let current = canary
        .filter(|c| c.phase != CanaryPhase::Promoting)
        .and_then(|c| usize::try_from(c.step).ok().map(|step| (step, c)));
    let rows: Vec<Vec<String>> = md
        .spec
        .rollout
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (mark, note) = match current {
                Some((at, canary)) if at == i => {
                    let mark = if canary.phase == CanaryPhase::Aborted {
                        "x"
                    } else {
                        ">"
                    };
                    (mark, step_note(step.pause.as_deref(), canary))
                }
                _ => (" ", String::new()),
            };
            vec![
                mark.to_string(),
                (i + 1).to_string(),
                format!("{}%", step.weight),
                step.pause
                    .clone()
                    .unwrap_or_else(|| "until promote".to_string()),
                note,
            ]
        })
        .collect();
    table("  ", &["", "STEP", "WEIGHT", "PAUSE", ""], &rows)
}

/// What the current step is doing.
fn step_note(pause: Option<&str>, canary: &CanaryStatus) -> String {
    match canary.phase {
        CanaryPhase::Aborted => "aborted here".to_string(),
        CanaryPhase::Paused => "paused: `kubectl kandle resume` lets it go on".to_string(),
        CanaryPhase::WaitingForPromote => "waits for `kubectl kandle promote`".to_string(),
        CanaryPhase::Promoting => String::new(),
        CanaryPhase::Progressing => match (&canary.step_start_time, pause) {
            (None, _) => "replicas starting".to_string(),
            (Some(since), Some(pause)) => match duration_seconds(pause)
                .and_then(|s| Timestamp::from_second(since.0.as_second() + s.ceil() as i64).ok())
            {
                Some(end) => format!("since {}, until {}", time(&since.0), time(&end)),
                None => format!("since {}", time(&since.0)),
            },
            (Some(since), None) => format!("since {}", time(&since.0)),
        },
    }
}

/// The analysis intervals, with the stable revision's figures beside the canary's.
fn analyses_table(analyses: &[&AnalysisResult]) -> String {
    let rows: Vec<Vec<String>> = analyses
        .iter()
        .map(|a| {
            let stable = a.stable.as_ref();
            vec![
                time(&a.time.0),
                a.requests.to_string(),
                percent(a.error_rate),
                latency(a.latency_p99_seconds),
                a.verdict.clone(),
                stable.map_or_else(|| "-".to_string(), |s| s.requests.to_string()),
                stable.map_or_else(|| "-".to_string(), |s| percent(s.error_rate)),
                stable.map_or_else(|| "-".to_string(), |s| latency(s.latency_p99_seconds)),
                a.message.clone(),
            ]
        })
        .collect();
    table(
        "  ",
        &[
            "TIME",
            "REQUESTS",
            "ERRORS",
            "P99",
            "VERDICT",
            "STABLE REQUESTS",
            "STABLE ERRORS",
            "STABLE P99",
            "MESSAGE",
        ],
        &rows,
    )
}

/// What a revision's Deployment says: desired replicas, and ready over total.
#[derive(Clone, Copy, Debug, Default)]
struct Replicas {
    desired: Option<i32>,
    counts: Option<(i32, i32)>,
}

/// One row per live revision: stable first, then the canary, then others that still have
/// replicas or pods. Ready and total come from the pods when any are seen, else from the
/// Deployment's status.
fn pod_rows(md: &ModelDeployment, deployments: &[Deployment], pods: &[Pod]) -> Vec<Vec<String>> {
    let empty = ModelDeploymentStatus::default();
    let status = md.status.as_ref().unwrap_or(&empty);
    let md_name = md.name_any();
    let prefix = format!("{md_name}-");
    let hash_of = |revision: &str| revision.strip_prefix(&prefix).map(str::to_string);
    let stable = status.stable_revision.clone();
    let canary = canary_revision(status).map(str::to_string);

    let mut revisions: BTreeMap<String, Replicas> = BTreeMap::new();
    for d in deployments {
        let desired = d.spec.as_ref().and_then(|s| s.replicas);
        let counts = d
            .status
            .as_ref()
            .map(|s| (s.ready_replicas.unwrap_or(0), s.replicas.unwrap_or(0)));
        revisions.insert(d.name_any(), Replicas { desired, counts });
    }
    for revision in stable.iter().chain(canary.iter()) {
        revisions.entry(revision.clone()).or_default();
    }
    // pods by revision hash -> (ready, total)
    let mut by_hash: BTreeMap<String, (i32, i32)> = BTreeMap::new();
    for pod in pods {
        let Some(hash) = pod.labels().get(labels::REVISION) else {
            continue;
        };
        let entry = by_hash.entry(hash.clone()).or_default();
        entry.1 += 1;
        entry.0 += i32::from(pod_ready(pod));
    }
    for hash in by_hash.keys() {
        revisions.entry(format!("{prefix}{hash}")).or_default();
    }

    let role = |revision: &str| {
        if stable.as_deref() == Some(revision) {
            (0, "stable")
        } else if canary.as_deref() == Some(revision) {
            (1, "canary")
        } else {
            (2, "old")
        }
    };
    let mut rows: Vec<((u8, String), Vec<String>)> = revisions
        .into_iter()
        .filter_map(
            |(
                revision,
                Replicas {
                    desired,
                    counts: deployment_counts,
                },
            )| {
                let (order, role) = role(&revision);
                let pod_counts = hash_of(&revision).and_then(|h| by_hash.get(&h).copied());
                let counts = pod_counts.or(deployment_counts);
                let idle = desired.unwrap_or(0) == 0 && counts.is_none_or(|(_, total)| total == 0);
                if order == 2 && idle {
                    return None;
                }
                let model = record(status, &revision)
                    .and_then(|r| r.model_version.clone())
                    .unwrap_or_else(|| "-".to_string());
                let row = vec![
                    revision.clone(),
                    role.to_string(),
                    model,
                    desired.map_or_else(|| "-".to_string(), |d| d.to_string()),
                    counts.map_or_else(
                        || "-".to_string(),
                        |(ready, total)| format!("{ready}/{total}"),
                    ),
                ];
                Some(((order, revision), row))
            },
        )
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// A pod counts as ready when its `Ready` condition is `True` and it is not terminating.
fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The `history` view: `status.history` as a table, oldest first (newest last).
pub fn history(md: &ModelDeployment) -> String {
    let mut records: Vec<&RevisionRecord> = md
        .status
        .as_ref()
        .map(|s| s.history.iter().collect())
        .unwrap_or_default();
    if records.is_empty() {
        return format!(
            "modeldeployment {:?} has no revision history yet\n",
            md.name_any()
        );
    }
    records.sort_by_key(|r| r.number);
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.number.to_string(),
                r.revision.clone(),
                r.model_version.clone().unwrap_or_else(|| "-".to_string()),
                outcome(r.outcome).to_string(),
                time(&r.time.0),
                r.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        "",
        &[
            "NUMBER",
            "REVISION",
            "MODEL VERSION",
            "OUTCOME",
            "TIME",
            "MESSAGE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
    use kandle_crds::{AnalysisSpec, CanaryStatus, RevisionFigures, RevisionRecord};
    use serde_json::json;

    use super::*;
    use crate::testing::md;

    const STABLE: &str = "minilm-5d8c7f9b21";
    const CANARY: &str = "minilm-0a1b2c3d4e";

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_764_150_000 + second).unwrap())
    }

    fn analysis(second: i64, requests: i64, error_rate: f64, verdict: &str) -> AnalysisResult {
        AnalysisResult {
            revision: CANARY.to_string(),
            time: at(second).0.into(),
            requests,
            error_rate,
            latency_p99_seconds: Some(0.182),
            verdict: verdict.to_string(),
            message: format!("{verdict}: error rate {}", percent(error_rate)),
            failures: i32::from(verdict == "Failed"),
            stable: Some(RevisionFigures {
                requests: requests * 3,
                error_rate: 0.0019,
                latency_p99_seconds: Some(0.161),
            }),
        }
    }

    fn history_record(
        revision: &str,
        number: i64,
        version: &str,
        outcome: RevisionOutcome,
    ) -> RevisionRecord {
        RevisionRecord {
            revision: revision.to_string(),
            number,
            model_version: Some(version.to_string()),
            outcome,
            time: at(number * 100 - 1000),
            message: None,
        }
    }

    /// A canary of v2 at step 2 of 3 (10%, 50%, 100%), holding its 5m pause, after three
    /// analysis intervals (one failed); the stable v1 runs 3 pods, the canary 2, one not ready.
    fn canary_at_step_two() -> (ModelDeployment, Vec<Deployment>, Vec<Pod>) {
        let status = ModelDeploymentStatus {
            observed_generation: Some(2),
            ready: Some("4/5".to_string()),
            stable_revision: Some(STABLE.to_string()),
            canary_revision: Some(CANARY.to_string()),
            canary_weight: Some(50),
            current_step: Some(1),
            history: vec![
                history_record(STABLE, 1, "v1", RevisionOutcome::Stable),
                history_record(CANARY, 2, "v2", RevisionOutcome::Progressing),
            ],
            canary: Some(CanaryStatus {
                revision: CANARY.to_string(),
                phase: CanaryPhase::Progressing,
                step: 1,
                step_start_time: Some(at(0)),
                stable_replicas: 3,
                canary_replicas: 2,
                effective_weight: 40,
                failures: 1,
                analyses: vec![
                    analysis(-120, 96, 0.0104, "Failed"),
                    analysis(-60, 112, 0.0, "Passed"),
                    analysis(0, 230, 0.0043, "Passed"),
                ],
                message: "holding step 2 for 5m".to_string(),
            }),
            last_command: Some("resume@1764149000000000000".to_string()),
            conditions: vec![
                condition(
                    "Ready",
                    "False",
                    "ReplicasNotReady",
                    "4 of 5 replicas ready",
                ),
                condition(
                    "Progressing",
                    "True",
                    "CanaryProgressing",
                    "revision minilm-0a1b2c3d4e: step 2 of 3 (50%)",
                ),
            ],
            ..ModelDeploymentStatus::default()
        };
        let mut md = md("minilm")
            .with_version("v2")
            .with_generation(2)
            .with_canary(&[10, 50, 100])
            .with_status(status)
            .build();
        md.spec.rollout.steps[0].pause = Some("1m".to_string());
        md.spec.rollout.steps[1].pause = Some("5m".to_string());
        md.spec.rollout.analysis = Some(AnalysisSpec {
            interval: "1m".to_string(),
            min_requests: 50,
            max_error_rate: 0.01,
            max_latency_p99: None,
            failure_limit: 2,
        });
        let deployments = vec![
            deployment(STABLE, 3, 3),
            deployment(CANARY, 2, 1),
            // An older revision kept at zero replicas is not listed.
            deployment("minilm-9999999999", 0, 0),
        ];
        let pods = vec![
            pod(STABLE, 1, true),
            pod(STABLE, 2, true),
            pod(STABLE, 3, true),
            pod(CANARY, 1, true),
            pod(CANARY, 2, false),
        ];
        (md, deployments, pods)
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: at(0),
            observed_generation: Some(2),
        }
    }

    fn deployment(name: &str, replicas: i32, ready: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus {
                replicas: Some(replicas),
                ready_replicas: Some(ready),
                ..DeploymentStatus::default()
            }),
        }
    }

    fn pod(revision: &str, index: usize, ready: bool) -> Pod {
        let hash = revision.trim_start_matches("minilm-");
        serde_json::from_value(json!({
            "metadata": {
                "name": format!("{revision}-{index}"),
                "labels": {labels::MODEL_DEPLOYMENT: "minilm", labels::REVISION: hash},
            },
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    #[test]
    fn the_status_of_a_canary_at_step_two_of_three_shows_steps_analyses_pods_and_conditions() {
        let (md, deployments, pods) = canary_at_step_two();
        let expected = "\
Name:       minilm
Namespace:  models
Model:      minilm v2
Generation: 2 (observed)
Strategy:   canary, 3 steps
Ready:      4/5
Stable:     minilm-5d8c7f9b21 (revision 1, model v1)
Canary:     minilm-0a1b2c3d4e (revision 2, model v2)
Phase:      Progressing, step 2 of 3
Weight:     40% effective (50% wanted; stable 3 replicas, canary 2 replicas)
Message:    holding step 2 for 5m
Command:    resume@1764149000000000000 (acted on)
Steps:
     STEP  WEIGHT  PAUSE
     1     10%     1m
  >  2     50%     5m             since 2025-11-26T09:40:00Z, until 2025-11-26T09:45:00Z
     3     100%    until promote
Analysis (1 failed, failureLimit 2; newest last):
  TIME                  REQUESTS  ERRORS  P99    VERDICT  STABLE REQUESTS  STABLE ERRORS  STABLE P99  MESSAGE
  2025-11-26T09:38:00Z  96        1.04%   182ms  Failed   288              0.19%          161ms       Failed: error rate 1.04%
  2025-11-26T09:39:00Z  112       0.00%   182ms  Passed   336              0.19%          161ms       Passed: error rate 0.00%
  2025-11-26T09:40:00Z  230       0.43%   182ms  Passed   690              0.19%          161ms       Passed: error rate 0.43%
Pods:
  REVISION           ROLE    MODEL  DESIRED  READY
  minilm-5d8c7f9b21  stable  v1     3        3/3
  minilm-0a1b2c3d4e  canary  v2     2        1/2
Conditions:
  TYPE         STATUS  REASON             MESSAGE
  Ready        False   ReplicasNotReady   4 of 5 replicas ready
  Progressing  True    CanaryProgressing  revision minilm-0a1b2c3d4e: step 2 of 3 (50%)
";
        let view = status(&md, &deployments, &pods);
        assert_eq!(view, expected, "got:\n{view}");
    }

    #[test]
    fn a_hub_source_shows_the_commit_its_branch_was_resolved_to() {
        let (mut md, deployments, pods) = canary_at_step_two();
        let hub = kandle_crds::HuggingFaceStatus {
            repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
            revision: "main".into(),
            commit: "c9745ed1d9f207416be6d2e6f8de32d1f16199bf".into(),
        };
        md.status.as_mut().unwrap().hugging_face = Some(hub.clone());
        let view = status(&md, &deployments, &pods);
        assert!(
            view.contains(
                "\nSource:     huggingFace sentence-transformers/all-MiniLM-L6-v2@main \
                 (commit c9745ed1d9f2)\n"
            ),
            "{view}"
        );
        md.status.as_mut().unwrap().hugging_face = Some(kandle_crds::HuggingFaceStatus {
            revision: hub.commit.clone(),
            ..hub
        });
        let view = status(&md, &deployments, &pods);
        assert!(
            view.contains(
                "\nSource:     huggingFace sentence-transformers/all-MiniLM-L6-v2@c9745ed1d9f2\n"
            ),
            "{view}"
        );
    }

    #[test]
    fn a_generation_model_says_so_beside_its_name() {
        let (mut md, deployments, pods) = canary_at_step_two();
        md.spec.model.task = Task::Generation;
        let view = status(&md, &deployments, &pods);
        assert!(
            view.contains("\nModel:      minilm v2 (generation)\n"),
            "{view}"
        );
    }

    #[test]
    fn ready_counts_fall_back_to_the_deployments_when_no_pod_is_seen() {
        let (md, deployments, _) = canary_at_step_two();
        let view = status(&md, &deployments, &[]);
        assert!(
            view.contains("minilm-5d8c7f9b21  stable  v1     3        3/3"),
            "{view}"
        );
        assert!(
            view.contains("minilm-0a1b2c3d4e  canary  v2     2        1/2"),
            "{view}"
        );
    }

    #[test]
    fn an_aborted_canary_marks_its_step_and_says_why() {
        let (mut md, deployments, pods) = canary_at_step_two();
        let canary = md.status.as_mut().unwrap().canary.as_mut().unwrap();
        canary.phase = CanaryPhase::Aborted;
        canary.effective_weight = 0;
        canary.message = "analysis failed 3 times (failureLimit 2): error rate 4.00%".to_string();
        let view = status(&md, &deployments, &pods);
        assert!(
            view.contains("Phase:      Aborted, step 2 of 3\n"),
            "{view}"
        );
        assert!(
            view.contains("Weight:     0% effective (0% wanted;"),
            "{view}"
        );
        assert!(
            view.contains("  x  2     50%     5m             aborted here\n"),
            "{view}"
        );
        assert!(
            view.contains("Message:    analysis failed 3 times"),
            "{view}"
        );
    }

    #[test]
    fn a_pending_command_and_a_stable_only_deployment_read_plainly() {
        let (mut md, deployments, pods) = canary_at_step_two();
        md.spec.rollout = Default::default();
        md.annotations_mut().insert(
            labels::COMMAND_ANNOTATION.to_string(),
            "abort@1764150000000000000".to_string(),
        );
        let status_ = md.status.as_mut().unwrap();
        status_.canary = None;
        status_.canary_revision = None;
        let view = status(&md, &deployments, &pods);
        assert!(view.contains("Strategy:   rolling\n"), "{view}");
        assert!(view.contains("Canary:     none\n"), "{view}");
        assert!(!view.contains("Steps:"), "{view}");
        assert!(
            view.contains("Command:    abort@1764150000000000000 (not acted on yet)\n"),
            "{view}"
        );
        // The former canary still has pods: it is listed as an old revision.
        assert!(view.contains("minilm-0a1b2c3d4e  old "), "{view}");
    }

    #[test]
    fn the_history_is_a_table_newest_last() {
        let (mut md, _, _) = canary_at_step_two();
        let history_ = &mut md.status.as_mut().unwrap().history;
        history_.reverse();
        history_[0].outcome = RevisionOutcome::Aborted;
        history_[0].message = Some("analysis failed 3 times (failureLimit 2)".to_string());
        history_[1].outcome = RevisionOutcome::RolledBack;
        let expected = "\
NUMBER  REVISION           MODEL VERSION  OUTCOME     TIME                  MESSAGE
1       minilm-5d8c7f9b21  v1             rolledBack  2025-11-26T09:25:00Z
2       minilm-0a1b2c3d4e  v2             aborted     2025-11-26T09:26:40Z  analysis failed 3 times (failureLimit 2)
";
        assert_eq!(history(&md), expected);
        md.status = None;
        assert_eq!(
            history(&md),
            "modeldeployment \"minilm\" has no revision history yet\n"
        );
    }

    #[test]
    fn figures_read_as_people_write_them() {
        assert_eq!(percent(0.0083), "0.83%");
        assert_eq!(latency(Some(0.25)), "250ms");
        assert_eq!(latency(Some(1.254)), "1.25s");
        assert_eq!(latency(None), "-");
    }
}
