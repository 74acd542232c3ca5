//! Schemas for Kubernetes quantities and durations: accepted forms are checked by the API server
//! with patterns, so `cpu: "two"` or `pause: 5 minutes` are rejected at apply time.

use schemars::{json_schema, Schema, SchemaGenerator};

/// A Kubernetes resource quantity (`500m`, `2`, `4Gi`, `1.5`) written as a string; integers
/// are accepted as they are.
pub const QUANTITY_PATTERN: &str =
    "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$";

/// A duration such as `30s`, `5m`, `1h30m` or `250ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

pub(crate) fn quantity(_: &mut SchemaGenerator) -> Schema {
    // The form Kubernetes' own CRDs use: OpenAPI applies `pattern` to the string form only, at
    // no CEL cost (a CEL rule on an int-or-string is costed as a 3 MiB string).
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "pattern": QUANTITY_PATTERN
    })
}

pub(crate) fn optional_duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": DURATION_PATTERN,
        "nullable": true
    })
}

pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "pattern": DURATION_PATTERN })
}

/// A count (`1`) or a percentage (`25%`), as a Deployment's `maxSurge`.
pub const COUNT_OR_PERCENT_PATTERN: &str = "^[0-9]+%?$";

pub(crate) fn count_or_percent(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "pattern": COUNT_OR_PERCENT_PATTERN
    })
}

/// Seconds in a duration of the [`DURATION_PATTERN`] form (`30s`, `5m`, `1h30m`, `250ms`);
/// `None` for anything else.
pub fn duration_seconds(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|end| *end > 0)?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else {
            match rest.chars().next()? {
                's' => (1.0, 1),
                'm' => (60.0, 1),
                'h' => (3600.0, 1),
                _ => return None,
            }
        };
        total += value * unit;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::duration_seconds;

    #[test]
    fn durations_read_as_the_pattern_allows() {
        assert_eq!(duration_seconds("0s"), Some(0.0));
        assert_eq!(duration_seconds("5m"), Some(300.0));
        assert_eq!(duration_seconds("1h30m"), Some(5400.0));
        assert_eq!(duration_seconds("250ms"), Some(0.25));
        assert_eq!(duration_seconds("1.5s"), Some(1.5));
        assert_eq!(duration_seconds(""), None);
        assert_eq!(duration_seconds("5"), None);
        assert_eq!(duration_seconds("five minutes"), None);
    }
}
