//! `promote`, `abort`, `retry`, `pause` and `resume`, decided without the API: whether the
//! command applies to where the canary stands, and what the operator will do with it, in words.
//! The rules follow the canary state machine ([`crate::canary::next`]): a command it would
//! ignore is refused here with the state named, instead of being written and silently dropped.

use kandle_crds::{CanaryPhase, CanaryStatus, ModelDeployment, ModelDeploymentStatus};
use kube::ResourceExt;

use super::render::{pending_command, phase};
use crate::command::Command;

/// What the operator will do with `command`, in words (with notes on the line after, such as a
/// pending command this one replaces), or why it is refused, naming the state.
pub fn check(md: &ModelDeployment, command: Command) -> Result<String, String> {
    let mut said = expect(md, command)?;
    if md.spec.paused {
        said.push_str(
            "\nNote: spec.paused is set: the operator acts on nothing until it is unset.",
        );
    }
    if let Some(pending) = pending_command(md) {
        said.push_str(&format!(
            "\nNote: this replaces the command {pending:?} the operator has not acted on yet."
        ));
    }
    Ok(said)
}

fn expect(md: &ModelDeployment, command: Command) -> Result<String, String> {
    let name = md.name_any();
    let empty = ModelDeploymentStatus::default();
    let status = md.status.as_ref().unwrap_or(&empty);
    let steps = &md.spec.rollout.steps;
    let stable = status.stable_revision.as_deref().unwrap_or("none");
    let Some(canary) = &status.canary else {
        let state = match status.canary_revision.as_deref() {
            Some(rolling) => format!("stable revision {stable}, rolling out {rolling}"),
            None => format!("stable revision {stable}"),
        };
        return Err(match command {
            Command::Retry => format!(
                "modeldeployment {name:?} has no aborted canary to retry: no canary in progress ({state})"
            ),
            other => format!(
                "modeldeployment {name:?} has no canary in progress ({state}): nothing to {other}"
            ),
        });
    };
    let revision = &canary.revision;
    let at = |c: &CanaryStatus| step_label(md, c.step);
    match (canary.phase, command) {
        (CanaryPhase::Aborted, Command::Retry) => Ok(format!(
            "The operator starts canary {revision} again from {}.",
            step_label(md, 0)
        )),
        (CanaryPhase::Aborted, other) => Err(format!(
            "canary {revision} of modeldeployment {name:?} was aborted ({}): nothing to {other}; \
             `kubectl kandle retry {name}` starts it again",
            canary.message,
        )),
        (CanaryPhase::Promoting, Command::Retry) => Ok(format!(
            "The operator stops promoting canary {revision} and walks its steps from {}.",
            step_label(md, 0)
        )),
        (p, Command::Retry) => Err(format!(
            "retry needs an aborted canary or one being promoted: canary {revision} of \
             modeldeployment {name:?} is {} at {}",
            phase(p),
            at(canary)
        )),
        (CanaryPhase::Promoting, Command::Abort) => Err(format!(
            "canary {revision} of modeldeployment {name:?} is already being promoted \
             (phase Promoting): abort no longer applies; `kubectl kandle undo {name}` goes back \
             to the previous revision"
        )),
        (CanaryPhase::Promoting, other) => Err(format!(
            "canary {revision} of modeldeployment {name:?} is already being promoted \
             (phase Promoting): nothing to {other}"
        )),
        (_, Command::Promote { full: true }) => Ok(format!(
            "The operator promotes canary {revision} at once: it skips the remaining steps, \
             grows to full size and replaces {stable} as the stable revision once available."
        )),
        (_, Command::Abort) => Ok(format!(
            "The operator aborts canary {revision}: it scales it to zero and {stable} serves all \
             traffic; the canary stays aborted until the spec changes or `kubectl kandle retry {name}`."
        )),
        (_, Command::Promote { full: false }) => {
            let step = usize::try_from(canary.step).unwrap_or(0);
            Ok(if step + 1 >= steps.len() {
                format!(
                    "The operator ends {}, the last one, and promotes canary {revision}: it grows \
                     to full size and replaces {stable} as the stable revision once available.",
                    at(canary)
                )
            } else {
                format!(
                    "The operator ends {} now and moves canary {revision} to {}.",
                    at(canary),
                    step_label(md, canary.step + 1)
                )
            })
        }
        (CanaryPhase::Paused, Command::Pause) => Err(format!(
            "canary {revision} of modeldeployment {name:?} is already paused at {}",
            at(canary)
        )),
        (_, Command::Pause) => Ok(format!(
            "The operator holds canary {revision} at {} until `kubectl kandle resume {name}`; \
             analysis goes on and can still abort it.",
            at(canary)
        )),
        (CanaryPhase::Paused, Command::Resume) => Ok(format!(
            "The operator lets canary {revision} go on from {}.",
            at(canary)
        )),
        (p, Command::Resume) => Err(format!(
            "canary {revision} of modeldeployment {name:?} is not paused ({} at {}): nothing to resume",
            phase(p),
            at(canary)
        )),
    }
}

/// `step 2 of 3 (50%)`.
fn step_label(md: &ModelDeployment, step: i32) -> String {
    let steps = &md.spec.rollout.steps;
    let weight = usize::try_from(step)
        .ok()
        .and_then(|i| steps.get(i))
        .map(|s| format!(" ({}%)", s.weight))
        .unwrap_or_default();
    format!("step {} of {}{weight}", step + 1, steps.len())
}

#[cfg(test)]
mod tests {
    use kandle_crds::{labels, CanaryStatus, ModelDeploymentStatus};

    use super::*;
    use crate::testing::md;

    fn at(phase: CanaryPhase, step: i32) -> ModelDeployment {
        let status = ModelDeploymentStatus {
            stable_revision: Some("minilm-aaaaaaaaaa".to_string()),
            canary_revision: Some("minilm-bbbbbbbbbb".to_string()),
            canary: Some(CanaryStatus {
                revision: "minilm-bbbbbbbbbb".to_string(),
                phase,
                step,
                step_start_time: None,
                stable_replicas: 3,
                canary_replicas: 1,
                effective_weight: 25,
                failures: 0,
                analyses: Vec::new(),
                message: "error rate 12.00% (max 1.00%)".to_string(),
            }),
            ..ModelDeploymentStatus::default()
        };
        let mut md = md("minilm")
            .with_canary(&[10, 50, 100])
            .with_status(status)
            .build();
        md.spec.rollout.steps[0].pause = Some("5m".to_string());
        md
    }

    #[test]
    fn without_a_canary_every_command_is_refused_naming_the_state() {
        let mut md = at(CanaryPhase::Progressing, 0);
        let status = md.status.as_mut().unwrap();
        status.canary = None;
        status.canary_revision = None;
        for command in [
            Command::Promote { full: false },
            Command::Promote { full: true },
            Command::Abort,
            Command::Pause,
            Command::Resume,
        ] {
            let refusal = check(&md, command).unwrap_err();
            assert!(
                refusal.contains("no canary in progress (stable revision minilm-aaaaaaaaaa)")
                    && refusal.contains(&format!("nothing to {command}")),
                "{refusal}"
            );
        }
        let refusal = check(&md, Command::Retry).unwrap_err();
        assert!(refusal.contains("no aborted canary to retry"), "{refusal}");
    }

    #[test]
    fn retry_needs_an_aborted_canary() {
        let refusal = check(&at(CanaryPhase::Progressing, 1), Command::Retry).unwrap_err();
        assert!(
            refusal.contains("is Progressing at step 2 of 3 (50%)"),
            "{refusal}"
        );
        let said = check(&at(CanaryPhase::Aborted, 1), Command::Retry).unwrap();
        assert!(said.contains("again from step 1 of 3 (10%)"), "{said}");
        let said = check(&at(CanaryPhase::Promoting, 2), Command::Retry).unwrap();
        assert!(said.contains("walks its steps from step 1 of 3"), "{said}");
    }

    #[test]
    fn an_aborted_canary_only_takes_retry() {
        for command in [
            Command::Promote { full: true },
            Command::Abort,
            Command::Resume,
        ] {
            let refusal = check(&at(CanaryPhase::Aborted, 1), command).unwrap_err();
            assert!(
                refusal.contains("was aborted (error rate 12.00% (max 1.00%))")
                    && refusal.contains("kubectl kandle retry minilm"),
                "{refusal}"
            );
        }
    }

    #[test]
    fn promote_ends_a_step_that_waits_for_it() {
        let said = check(
            &at(CanaryPhase::WaitingForPromote, 1),
            Command::Promote { full: false },
        )
        .unwrap();
        assert!(
            said.contains("ends step 2 of 3 (50%) now and moves canary minilm-bbbbbbbbbb to step 3 of 3 (100%)"),
            "{said}"
        );
        let last = check(
            &at(CanaryPhase::WaitingForPromote, 2),
            Command::Promote { full: false },
        )
        .unwrap();
        assert!(last.contains("the last one, and promotes"), "{last}");
    }

    #[test]
    fn promote_cuts_a_timed_pause_short_and_promote_full_skips_every_step() {
        let md = at(CanaryPhase::Progressing, 0);
        let said = check(&md, Command::Promote { full: false }).unwrap();
        assert!(said.contains("ends step 1 of 3 (10%) now"), "{said}");
        let said = check(&md, Command::Promote { full: true }).unwrap();
        assert!(said.contains("at once"), "{said}");
    }

    #[test]
    fn pause_and_resume_refuse_what_is_already_so() {
        assert!(check(&at(CanaryPhase::Paused, 1), Command::Pause)
            .unwrap_err()
            .contains("already paused at step 2 of 3"));
        assert!(check(&at(CanaryPhase::Progressing, 1), Command::Resume)
            .unwrap_err()
            .contains("is not paused (Progressing at step 2 of 3 (50%))"));
        assert!(check(&at(CanaryPhase::Progressing, 1), Command::Pause).is_ok());
        assert!(check(&at(CanaryPhase::Paused, 1), Command::Resume).is_ok());
    }

    #[test]
    fn a_pending_command_and_spec_paused_are_pointed_out() {
        let mut md = at(CanaryPhase::Progressing, 1);
        md.spec.paused = true;
        md.annotations_mut().insert(
            labels::COMMAND_ANNOTATION.to_string(),
            "pause@1".to_string(),
        );
        let said = check(&md, Command::Abort).unwrap();
        assert!(said.contains("spec.paused is set"), "{said}");
        assert!(said.contains("replaces the command \"pause@1\""), "{said}");
        // Once acted on, the annotation is no longer pending.
        md.status.as_mut().unwrap().last_command = Some("pause@1".to_string());
        assert!(!check(&md, Command::Abort).unwrap().contains("replaces"));
    }
}
