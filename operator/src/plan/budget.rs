//! The surge/unavailable budget of a rolling rollout: how many replicas the new revision and
//! the serving one get in this pass.
//!
//! The new revision may start `maxSurge` pods above `replicas`; the serving revision gives back
//! one pod for each new pod that becomes available. Capacity is only given up (`maxUnavailable`)
//! when the surge pods cannot be placed, or when `maxSurge` is 0, so a model rolls without
//! losing capacity where there is room and still rolls, one pod at a time, on a full cluster.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// What the budget is computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetInput {
    /// `spec.replicas`.
    pub desired: i32,
    /// `maxSurge`, resolved to a count.
    pub max_surge: i32,
    /// `maxUnavailable`, resolved to a count.
    pub max_unavailable: i32,
    /// Available pods of the new revision.
    pub target_available: i32,
    /// Pods of the new revision wait for room on the nodes.
    pub waiting_for_room: bool,
}

/// Replicas for the new revision and for the serving one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Replicas of the revision being rolled out.
    pub target: i32,
    /// Replicas of the revision serving until then.
    pub stable: i32,
}

/// Splits `desired` replicas between the new revision and the serving one.
pub fn split(input: BudgetInput) -> Split {
    let desired = input.desired.max(0);
    let surge = input.max_surge.clamp(0, desired.max(1));
    let unavailable = if surge == 0 || input.waiting_for_room {
        input.max_unavailable.clamp(0, desired)
    } else {
        0
    };
    let available = input.target_available.clamp(0, desired);
    let stable = (desired - available - unavailable).max(0);
    let target = (desired + surge - stable).clamp(0, desired);
    Split { target, stable }
}

/// A count or a percentage of `desired`; percentages round up for a surge and down for
/// unavailability, as a Deployment's do. A malformed value (the schema rejects them) counts 0.
pub fn resolve(value: &IntOrString, desired: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(count) => (*count).max(0),
        IntOrString::String(text) => {
            let Some(percent) = text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return text.parse::<i32>().unwrap_or(0).max(0);
            };
            let scaled = i64::from(desired.max(0)) * percent.max(0);
            let count = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            i32::try_from(count).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(
        desired: i32,
        surge: i32,
        unavailable: i32,
        available: i32,
        full: bool,
    ) -> BudgetInput {
        BudgetInput {
            desired,
            max_surge: surge,
            max_unavailable: unavailable,
            target_available: available,
            waiting_for_room: full,
        }
    }

    #[test]
    fn with_room_the_new_revision_surges_and_the_old_one_keeps_full_size() {
        assert_eq!(
            split(input(4, 1, 1, 0, false)),
            Split {
                target: 1,
                stable: 4
            }
        );
        assert_eq!(
            split(input(4, 1, 1, 1, false)),
            Split {
                target: 2,
                stable: 3
            }
        );
        assert_eq!(
            split(input(4, 1, 1, 4, false)),
            Split {
                target: 4,
                stable: 0
            }
        );
    }

    #[test]
    fn on_a_full_cluster_one_old_pod_makes_room() {
        // Two replicas on exactly two GPUs: the surge pod cannot be placed.
        assert_eq!(
            split(input(2, 1, 1, 0, true)),
            Split {
                target: 2,
                stable: 1
            }
        );
        assert_eq!(
            split(input(2, 1, 1, 1, true)),
            Split {
                target: 2,
                stable: 0
            }
        );
        // With maxUnavailable 0 it waits for room instead.
        assert_eq!(
            split(input(2, 1, 0, 0, true)),
            Split {
                target: 1,
                stable: 2
            }
        );
    }

    #[test]
    fn a_single_replica_rolls_with_a_surge_pod() {
        assert_eq!(
            split(input(1, 1, 1, 0, false)),
            Split {
                target: 1,
                stable: 1
            }
        );
        assert_eq!(
            split(input(1, 1, 1, 1, false)),
            Split {
                target: 1,
                stable: 0
            }
        );
    }

    #[test]
    fn percentages_round_like_a_deployments() {
        let pct = |p: &str| IntOrString::String(p.to_string());
        assert_eq!(resolve(&pct("25%"), 1, true), 1);
        assert_eq!(resolve(&pct("25%"), 1, false), 0);
        assert_eq!(resolve(&pct("25%"), 8, true), 2);
        assert_eq!(resolve(&pct("50%"), 5, false), 2);
        assert_eq!(resolve(&IntOrString::Int(3), 8, true), 3);
        assert_eq!(resolve(&pct("2"), 8, true), 2);
    }

    proptest! {
        #[test]
        fn the_budget_holds(desired in 0i32..40, surge in 0i32..10, unavailable in 0i32..10,
                            available in 0i32..40, full: bool) {
            let s = split(input(desired, surge, unavailable, available, full));
            let available = available.min(desired);
            let allowed_down = if surge == 0 || full { unavailable.min(desired) } else { 0 };
            // Never more pods than replicas plus the surge.
            prop_assert!(s.target + s.stable <= desired + surge);
            // Serving capacity never drops below what the budget allows.
            prop_assert!(s.stable + available >= desired - allowed_down);
            prop_assert!(s.target <= desired && s.target >= available);
            prop_assert!(s.stable <= desired);
        }

        #[test]
        fn a_rollout_that_may_move_does_move(desired in 1i32..40, surge in 0i32..10,
                                              unavailable in 0i32..10, full: bool) {
            // From any point short of done, the new revision is offered more pods than it has
            // available, unless the budget forbids every move.
            prop_assume!(surge > 0 || unavailable > 0);
            prop_assume!(!(full && unavailable == 0));
            for available in 0..desired {
                let s = split(input(desired, surge, unavailable, available, full));
                prop_assert!(s.target > available, "stuck at {available}: {s:?}");
            }
        }
    }
}
