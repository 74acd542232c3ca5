//! Traffic by replica ratio, pure: with one Service over all live revisions, kube-proxy spreads
//! connections over ready endpoints, so a canary's share of traffic is its share of the ready
//! replicas. [`split`] picks the replica counts whose share comes closest to a step's weight.
//! By default the stable keeps its full size (a rollback only moves traffic); with
//! [`StableSize::ScaleDown`] it shrinks as the canary grows, for clusters short of GPUs, at the
//! price of a rollback that must start stable pods again. With an HTTPRoute the weight is exact
//! and [`routed`] only sizes the canary for its share.

/// What happens to the stable revision's size during a canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StableSize {
    /// The stable keeps every replica; the canary's pods come on top.
    Keep,
    /// The stable gives up a replica for each canary replica (never its last).
    ScaleDown,
}

/// Replica counts for one step, and the weight they give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Replicas of the stable revision.
    pub stable: i32,
    /// Replicas of the canary.
    pub canary: i32,
    /// The canary's share of the replicas, in percent, rounded.
    pub effective_weight: i32,
}

/// The split closest to `weight` percent for a ModelDeployment of `replicas`. A weight of 100
/// is the canary promoted: all replicas on it. Below that, each side keeps at least one
/// replica, so both are judged and the stable is never gone while it is stable.
pub fn split(replicas: i32, weight: i32, mode: StableSize) -> Split {
    let n = replicas.max(1);
    let w = weight.clamp(1, 100);
    let (stable, canary) = if w == 100 {
        (0, n)
    } else {
        let share = f64::from(w) / 100.0;
        match mode {
            StableSize::Keep => {
                // The share c / (n + c) is concave in c: compare both whole neighbours.
                let ideal = f64::from(n) * share / (1.0 - share);
                let error = |c: i32| (f64::from(c) / f64::from(n + c) - share).abs();
                let (low, high) = ((ideal.floor() as i32).max(1), (ideal.ceil() as i32).max(1));
                (n, if error(high) < error(low) { high } else { low })
            }
            StableSize::ScaleDown if n == 1 => (1, 1),
            StableSize::ScaleDown => {
                let canary = ((f64::from(n) * share).round() as i32).clamp(1, n - 1);
                (n - canary, canary)
            }
        }
    };
    let effective = f64::from(canary) * 100.0 / f64::from(stable + canary);
    Split {
        stable,
        canary,
        effective_weight: effective.round() as i32,
    }
}

/// Replica counts for one step when an HTTPRoute sets the exact `weight`: the canary gets
/// enough replicas for its share of the traffic (rounded up, at least one); the effective
/// weight is the route's.
pub fn routed(replicas: i32, weight: i32, mode: StableSize) -> Split {
    let n = replicas.max(1);
    let w = weight.clamp(1, 100);
    if w == 100 {
        return Split {
            stable: 0,
            canary: n,
            effective_weight: 100,
        };
    }
    let canary = ((f64::from(n) * f64::from(w) / 100.0).ceil() as i32).clamp(1, n);
    let stable = match mode {
        StableSize::Keep => n,
        StableSize::ScaleDown => (n - canary).max(1),
    };
    Split {
        stable,
        canary,
        effective_weight: w,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn examples() {
        assert_eq!(
            split(4, 20, StableSize::Keep),
            Split {
                stable: 4,
                canary: 1,
                effective_weight: 20
            }
        );
        assert_eq!(
            split(4, 50, StableSize::Keep),
            Split {
                stable: 4,
                canary: 4,
                effective_weight: 50
            }
        );
        assert_eq!(
            split(10, 25, StableSize::ScaleDown),
            Split {
                stable: 7,
                canary: 3,
                effective_weight: 30
            }
        );
        assert_eq!(
            split(1, 10, StableSize::ScaleDown),
            Split {
                stable: 1,
                canary: 1,
                effective_weight: 50
            }
        );
        assert_eq!(
            split(3, 100, StableSize::Keep),
            Split {
                stable: 0,
                canary: 3,
                effective_weight: 100
            }
        );
    }

    #[test]
    fn the_granularity_table_of_docs_canary() {
        let weight = |n, w| split(n, w, StableSize::Keep);
        assert_eq!(
            (weight(4, 10).canary, weight(4, 10).effective_weight),
            (1, 20)
        );
        assert_eq!(
            (weight(4, 25).canary, weight(4, 25).effective_weight),
            (1, 20)
        );
        assert_eq!(
            (weight(4, 50).canary, weight(4, 50).effective_weight),
            (4, 50)
        );
        assert_eq!(
            (weight(2, 25).canary, weight(2, 25).effective_weight),
            (1, 33)
        );
        assert_eq!(
            (weight(10, 10).canary, weight(10, 10).effective_weight),
            (1, 9)
        );
    }

    fn any_mode() -> impl Strategy<Value = StableSize> {
        prop_oneof![Just(StableSize::Keep), Just(StableSize::ScaleDown)]
    }

    proptest! {
        #[test]
        fn both_sides_serve_until_promotion(n in 1i32..64, w in 1i32..100, mode in any_mode()) {
            let s = split(n, w, mode);
            prop_assert!(s.stable >= 1 && s.canary >= 1, "{s:?}");
            prop_assert!(s.effective_weight > 0 && s.effective_weight < 100, "{s:?}");
        }

        #[test]
        fn the_weight_is_as_close_as_whole_replicas_allow(n in 1i32..64, w in 1i32..100) {
            let s = split(n, w, StableSize::Keep);
            let exact = f64::from(s.canary) / f64::from(n + s.canary);
            let next = |c: i32| (f64::from(c) / f64::from(n + c) - f64::from(w) / 100.0).abs();
            let err = (exact - f64::from(w) / 100.0).abs();
            prop_assert!(err <= next(s.canary + 1) + 1e-12 && (s.canary == 1 || err <= next(s.canary - 1) + 1e-12),
                "{s:?} for {w}%");
            prop_assert_eq!(s.stable, n, "the stable keeps its size");
        }

        #[test]
        fn a_route_gives_the_canary_enough_replicas_for_its_share(n in 1i32..64, w in 1i32..100, mode in any_mode()) {
            let s = routed(n, w, mode);
            prop_assert_eq!(s.effective_weight, w);
            prop_assert!(s.stable >= 1 && s.canary >= 1);
            prop_assert!(f64::from(s.canary) >= f64::from(n) * f64::from(w) / 100.0 - 1e-9, "{s:?}");
        }

        #[test]
        fn a_higher_weight_never_gives_the_canary_less(n in 1i32..64, w in 1i32..99, mode in any_mode()) {
            prop_assert!(split(n, w + 1, mode).canary >= split(n, w, mode).canary);
        }
    }
}
