//! The `kandle.dev/command` annotation: how `kubectl kandle` asks the operator to promote,
//! abort, retry, pause or resume a canary without touching the spec (so GitOps tools see no
//! drift). The value is a verb, optionally `--full` after `promote`, then `@` and an id unique
//! to the request (`kubectl kandle` uses the time in nanoseconds): `promote --full@1764140000123`.
//! The operator records the whole value in `status.lastCommand` when it acts, so a command is
//! applied once, and then removes the annotation.

use std::fmt;

use kandle_crds::labels::COMMAND_ANNOTATION;
use kandle_crds::ModelDeployment;
use kube::ResourceExt;

pub use crate::canary::Command;

/// The verbs, as written in the annotation.
pub const VERBS: &[&str] = &[
    "promote",
    "promote --full",
    "abort",
    "retry",
    "pause",
    "resume",
];

/// The `kandle.dev/command` annotation of `md` when the operator has not acted on it yet (it is
/// not the value `status.lastCommand` records).
pub fn pending(md: &ModelDeployment) -> Option<&str> {
    let value = md.annotations().get(COMMAND_ANNOTATION)?;
    let done = md.status.as_ref().and_then(|s| s.last_command.as_ref());
    (done != Some(value)).then_some(value.as_str())
}

/// Reads an annotation value; the error names what is wrong.
pub fn parse(value: &str) -> Result<Command, String> {
    let verb = value
        .rsplit_once('@')
        .map_or(value, |(verb, _id)| verb)
        .trim();
    match verb {
        "promote" => Ok(Command::Promote { full: false }),
        "promote --full" => Ok(Command::Promote { full: true }),
        "abort" => Ok(Command::Abort),
        "retry" => Ok(Command::Retry),
        "pause" => Ok(Command::Pause),
        "resume" => Ok(Command::Resume),
        other => Err(format!(
            "unknown command {other:?} in {COMMAND_ANNOTATION}: expected one of {}",
            VERBS.join(", ")
        )),
    }
}

/// The annotation value for `command` with the unique `id`.
pub fn annotation_value(command: Command, id: &str) -> String {
    format!("{command}@{id}")
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Promote { full: false } => "promote",
            Command::Promote { full: true } => "promote --full",
            Command::Abort => "abort",
            Command::Retry => "retry",
            Command::Pause => "pause",
            Command::Resume => "resume",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_reads_back_with_or_without_an_id() {
        for verb in VERBS {
            let command = parse(verb).unwrap();
            assert_eq!(command.to_string(), *verb);
            assert_eq!(
                parse(&annotation_value(command, "1764140000123")),
                Ok(command)
            );
        }
    }

    #[test]
    fn an_unknown_verb_is_named() {
        let error = parse("rollback@12").unwrap_err();
        assert!(
            error.contains("\"rollback\"") && error.contains("promote --full"),
            "{error}"
        );
    }
}
