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
