//! The canary rollout as a state machine, pure: from the steps, the state the status holds, what
//! was observed (is the canary serving its step, the verdict of an analysis interval that just
//! ended) and a command of `kubectl kandle`, the next state. Weights only rise within a
//! rollout; an abort holds the canary at 0% until `retry` or a new spec; the same inputs always
//! give the same state.

use chrono::{DateTime, TimeDelta, Utc};
use kandle_crds::{duration_seconds, CanaryStep};

/// What `kubectl kandle` asked for (through the `kandle.dev/command` annotation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// End the current step now, whatever it waits for (`--full`: promote the canary at once).
    Promote {
        /// Skip the remaining steps.
        full: bool,
    },
    /// Roll back to the stable revision.
    Abort,
    /// Start an aborted canary again from its first step.
    Retry,
    /// Hold the current step.
    Pause,
    /// Let a held step go on.
    Resume,
}

/// Where a canary stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// At `step`, since `since` (when its replicas were first serving).
    Step {
        /// Index into the steps.
        step: usize,
        /// When the step's replicas were first all serving; `None` while they start.
        since: Option<DateTime<Utc>>,
        /// Failed analysis intervals so far.
        failures: i32,
        /// Held by `kubectl kandle pause`.
        paused: bool,
    },
    /// Every step passed: the canary becomes the stable revision.
    Promoted,
    /// Rolled back, and why.
    Aborted {
        /// In words, with the failing figures where analysis decided.
        reason: String,
    },
}

/// What one pass observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The canary serves its step's weight with ready replicas.
    pub serving: bool,
    /// An analysis interval ended in this pass: `Some(Ok(()))` passed or inconclusive,
    /// `Some(Err(message))` failed.
    pub verdict: Option<Result<(), String>>,
    /// A command to act on.
    pub command: Option<Command>,
}

/// The weight of `phase` in percent: the step's, 100 once promoted, 0 once aborted.
pub fn weight(steps: &[CanaryStep], phase: &Phase) -> i32 {
    match phase {
        Phase::Step { step, .. } => steps.get(*step).map_or(100, |s| s.weight),
        Phase::Promoted => 100,
        Phase::Aborted { .. } => 0,
    }
}

/// The phase after this pass.
pub fn next(
    steps: &[CanaryStep],
    failure_limit: i32,
    phase: &Phase,
    seen: &Observation,
    now: DateTime<Utc>,
) -> Phase {
    let fresh = Phase::Step {
        step: 0,
        since: None,
        failures: 0,
        paused: false,
    };
    let Phase::Step {
        step,
        since,
        failures,
        paused,
    } = phase.clone()
    else {
        return match (phase, seen.command) {
            // Retry also restarts the steps of a promotion in progress (a return to a revision
            // that served before is promoted without steps unless asked).
            (Phase::Aborted { .. } | Phase::Promoted, Some(Command::Retry)) => fresh,
            _ => phase.clone(),
        };
    };
    match seen.command {
        Some(Command::Abort) => {
            return Phase::Aborted {
                reason: "aborted by hand (kubectl kandle abort)".to_string(),
            }
        }
        Some(Command::Promote { full: true }) => return Phase::Promoted,
        _ => {}
    }
    let failures = failures + i32::from(matches!(seen.verdict, Some(Err(_))));
    if failures > failure_limit {
        let why = match &seen.verdict {
            Some(Err(message)) => message.clone(),
            _ => "analysis failed".to_string(),
        };
        return Phase::Aborted {
            reason: format!(
                "analysis failed {failures} times (failureLimit {failure_limit}): {why}"
            ),
        };
    }
    let paused = match seen.command {
        Some(Command::Pause) => true,
        Some(Command::Resume) => false,
        _ => paused,
    };
    let since = since.or(seen.serving.then_some(now));
    let held = Phase::Step {
        step,
        since,
        failures,
        paused,
    };
    // `promote` ends the current step at once: one that waits for it, one still in its pause,
    // a paused one, or one whose replicas are still starting.
    let promoted = seen.command == Some(Command::Promote { full: false });
    let timed_out = match (steps.get(step), since) {
        (Some(current), Some(since)) => {
            match current.pause.as_deref().and_then(duration_seconds) {
                Some(seconds) => {
                    !paused && now - since >= TimeDelta::milliseconds((seconds * 1000.0) as i64)
                }
                // A step without a pause waits for `kubectl kandle promote`.
                None => false,
            }
        }
        _ => false,
    };
    let done = promoted || timed_out;
    if !done {
        return held;
    }
    if step + 1 >= steps.len() {
        Phase::Promoted
    } else {
        Phase::Step {
            step: step + 1,
            since: None,
            failures,
            paused: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn steps(spec: &[(i32, Option<&str>)]) -> Vec<CanaryStep> {
        spec.iter()
            .map(|(weight, pause)| CanaryStep {
                weight: *weight,
                pause: pause.map(str::to_string),
            })
            .collect()
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(1_000_000 + s)
    }

    const START: Phase = Phase::Step {
        step: 0,
        since: None,
        failures: 0,
        paused: false,
    };

    fn serving() -> Observation {
        Observation {
            serving: true,
            ..Observation::default()
        }
    }

    #[test]
    fn a_healthy_canary_walks_its_steps_and_is_promoted() {
        let steps = steps(&[(10, Some("10s")), (50, Some("10s"))]);
        let mut phase = START;
        let mut weights = Vec::new();
        for s in 0..40 {
            phase = next(&steps, 0, &phase, &serving(), t(s));
            weights.push(weight(&steps, &phase));
        }
        assert_eq!(phase, Phase::Promoted);
        assert_eq!(weights[0], 10);
        assert!(weights.contains(&50));
        assert!(weights.windows(2).all(|w| w[0] <= w[1]), "{weights:?}");
    }

    #[test]
    fn a_step_without_a_pause_waits_for_promote() {
        let steps = steps(&[(20, None), (60, Some("1s"))]);
        let mut phase = next(&steps, 0, &START, &serving(), t(0));
        for s in 1..100 {
            phase = next(&steps, 0, &phase, &serving(), t(s));
        }
        assert_eq!(weight(&steps, &phase), 20);
        let promote = Observation {
            command: Some(Command::Promote { full: false }),
            ..serving()
        };
        phase = next(&steps, 0, &phase, &promote, t(100));
        assert_eq!(weight(&steps, &phase), 60);
    }

    #[test]
    fn failures_past_the_limit_abort_with_the_figures_and_retry_starts_again() {
        let steps = steps(&[(10, Some("1h"))]);
        let failed = Observation {
            verdict: Some(Err("error rate 12.00% (max 1.00%)".to_string())),
            ..serving()
        };
        let once = next(&steps, 1, &START, &failed, t(0));
        assert!(matches!(once, Phase::Step { failures: 1, .. }));
        let twice = next(&steps, 1, &once, &failed, t(10));
        let Phase::Aborted { reason } = &twice else {
            panic!("{twice:?}")
        };
        assert!(reason.contains("error rate 12.00%"), "{reason}");
        assert_eq!(weight(&steps, &twice), 0);
        assert_eq!(
            next(&steps, 1, &twice, &serving(), t(20)),
            twice,
            "stays aborted"
        );
        let retry = Observation {
            command: Some(Command::Retry),
            ..serving()
        };
        assert_eq!(next(&steps, 1, &twice, &retry, t(30)), START);
    }

    #[test]
    fn a_paused_step_holds_until_resumed() {
        let steps = steps(&[(10, Some("5s")), (50, Some("5s"))]);
        let pause = Observation {
            command: Some(Command::Pause),
            ..serving()
        };
        let mut phase = next(&steps, 0, &START, &pause, t(0));
        for s in 1..60 {
            phase = next(&steps, 0, &phase, &serving(), t(s));
        }
        assert_eq!(weight(&steps, &phase), 10);
        let resume = Observation {
            command: Some(Command::Resume),
            ..serving()
        };
        phase = next(&steps, 0, &phase, &resume, t(60));
        assert_eq!(weight(&steps, &phase), 50);
    }

    fn any_observation() -> impl Strategy<Value = Observation> {
        let command = prop_oneof![
            6 => Just(None),
            1 => Just(Some(Command::Promote { full: false })),
            1 => Just(Some(Command::Pause)),
            1 => Just(Some(Command::Resume)),
            1 => Just(Some(Command::Abort)),
            1 => Just(Some(Command::Promote { full: true })),
        ];
        let verdict = prop_oneof![
            4 => Just(None),
            2 => Just(Some(Ok(()))),
            1 => Just(Some(Err("p99 900 ms".to_string()))),
        ];
        (any::<bool>(), verdict, command).prop_map(|(serving, verdict, command)| Observation {
            serving,
            verdict,
            command,
        })
    }

    proptest! {
        #[test]
        fn weights_only_rise_and_an_abort_ends_at_zero(
            seen in prop::collection::vec(any_observation(), 1..200),
            limit in 0i32..3,
        ) {
            let steps = steps(&[(5, Some("3s")), (25, None), (50, Some("2s")), (80, Some("1s"))]);
            let mut phase = START;
            let mut last = weight(&steps, &phase);
            for (s, o) in seen.iter().enumerate() {
                let again = next(&steps, limit, &phase, o, t(s as i64));
                prop_assert_eq!(&again, &next(&steps, limit, &phase, o, t(s as i64)), "deterministic");
                phase = again;
                let w = weight(&steps, &phase);
                if matches!(phase, Phase::Aborted { .. }) {
                    prop_assert_eq!(w, 0);
                } else {
                    prop_assert!(w >= last, "weight fell from {} to {}", last, w);
                    last = w;
                }
                if matches!(phase, Phase::Aborted { .. } | Phase::Promoted) {
                    break;
                }
            }
        }
    }
}
