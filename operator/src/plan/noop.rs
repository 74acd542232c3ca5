//! Leaves out of a plan the writes that would change nothing. A child is left out when the
//! cluster already holds it as planned: every field the plan sets has that value there (fields
//! others set, and defaults the API server fills in, do not count), and its `kandle.dev/applied-hash`
//! annotation names the very object planned, so a field the plan stopped setting is still
//! noticed. The status is left out when it is the one already written, unless a child is
//! written: the status write, conditional on the resourceVersion, guards the children's.

use kandle_crds::ModelDeployment;
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Plan;
use crate::observe::Observed;

/// Annotation on every child: a hash of the object as the operator last planned it.
pub const APPLIED_HASH: &str = "kandle.dev/applied-hash";

/// `plan` less the writes that would change nothing in `observed` and `md`'s status; every
/// child kept carries [`APPLIED_HASH`].
pub fn without_no_ops(mut plan: Plan, md: &ModelDeployment, observed: &Observed) -> Plan {
    plan.deployments = needed(plan.deployments, &observed.deployments);
    plan.revisions = needed(plan.revisions, &observed.revisions);
    plan.service = plan
        .service
        .and_then(|s| needed(vec![s], observed.service.as_slice()).pop());
    plan.pdb = plan
        .pdb
        .and_then(|p| needed(vec![p], observed.pdb.as_slice()).pop());
    plan.hpa = plan
        .hpa
        .and_then(|h| needed(vec![h], observed.hpa.as_slice()).pop());
    plan.revision_services = needed(plan.revision_services, &observed.revision_services);
    plan.route = plan
        .route
        .and_then(|r| needed(vec![r], observed.route.as_slice()).pop());
    let children = !plan.deployments.is_empty()
        || !plan.revisions.is_empty()
        || plan.service.is_some()
        || plan.pdb.is_some()
        || plan.hpa.is_some()
        || !plan.revision_services.is_empty()
        || plan.route.is_some()
        || !plan.delete.is_empty();
    plan.write_status = plan.write_status && (children || md.status.as_ref() != Some(&plan.status));
    plan
}

/// The `wanted` objects, stamped, that `observed` does not already hold.
fn needed<K>(wanted: Vec<K>, observed: &[K]) -> Vec<K>
where
    K: ResourceExt + Serialize,
{
    wanted
        .into_iter()
        .map(stamped)
        .filter(|child| {
            let held = observed.iter().find(|o| o.name_any() == child.name_any());
            !held.is_some_and(|held| holds(held, child))
        })
        .collect()
}

/// `object` with [`APPLIED_HASH`] set to the hash of the object without it.
fn stamped<K: ResourceExt + Serialize>(mut object: K) -> K {
    object.annotations_mut().remove(APPLIED_HASH);
    let hash = serde_json::to_vec(&object)
        .map(|bytes| hex::encode(&Sha256::digest(&bytes)[..8]))
        .unwrap_or_default();
    object.annotations_mut().insert(APPLIED_HASH.into(), hash);
    object
}

/// Whether `held` has every field `wanted` sets, with the same value.
fn holds<K: Serialize>(held: &K, wanted: &K) -> bool {
    match (serde_json::to_value(held), serde_json::to_value(wanted)) {
        (Ok(held), Ok(wanted)) => contains(&held, &wanted, false),
        _ => false,
    }
}

/// Whether `held` holds `wanted`: objects field by field (empty and absent alike), lists item
/// by item, resource amounts (under `requests` and `limits`) by value ("0.5" is "500m"),
/// anything else equal.
fn contains(held: &Value, wanted: &Value, amounts: bool) -> bool {
    match (held, wanted) {
        (_, Value::Null) => true,
        (Value::Object(held), Value::Object(wanted)) => {
            wanted.iter().all(|(k, w)| match held.get(k) {
                Some(h) => contains(h, w, amounts || k == "requests" || k == "limits"),
                None => is_empty(w),
            })
        }
        (Value::Array(held), Value::Array(wanted)) => {
            held.len() == wanted.len()
                && held
                    .iter()
                    .zip(wanted)
                    .all(|(h, w)| contains(h, w, amounts))
        }
        (Value::Null, wanted) => is_empty(wanted),
        (Value::Number(h), Value::Number(w)) => h.as_f64() == w.as_f64(),
        (Value::String(h), Value::String(w)) if amounts => h == w || amounts_equal(h, w),
        (held, wanted) => held == wanted,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.values().all(is_empty),
        _ => false,
    }
}

/// Whether two strings are the same Kubernetes quantity written two ways.
fn amounts_equal(a: &str, b: &str) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
        _ => false,
    }
}

/// The value of a quantity such as `500m`, `1.5Gi` or `2e3`; `None` for anything else.
fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1.0));
    let starts_numeric = number
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
    if !starts_numeric {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * scale)
}
