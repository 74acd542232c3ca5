//! The operator's upgrade budget: at most `--max-concurrent-upgrades` `ModelDeployment`s roll
//! out a change the operator itself caused (a new default runtime image or pod
//! template code) at once, so upgrading the operator never restarts the whole fleet together.
//! Slots are held per `ModelDeployment` while its upgrade rolls and refreshed by each pass; a
//! slot not refreshed for a while (its `ModelDeployment` was deleted mid-upgrade) is freed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upgrade slots shared by every reconcile pass of one operator process.
#[derive(Debug)]
pub struct UpgradeSlots {
    capacity: usize,
    expiry: Duration,
    held: Mutex<BTreeMap<String, Instant>>,
}

impl UpgradeSlots {
    /// `capacity` slots, each freed when not refreshed for `expiry`.
    pub fn new(capacity: usize, expiry: Duration) -> Self {
        Self {
            capacity,
            expiry,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    /// Takes or refreshes the slot of `key` at `now`; `false` when every slot is taken.
    pub fn try_hold(&self, key: &str, now: Instant) -> bool {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, refreshed| now.saturating_duration_since(*refreshed) < self.expiry);
        if held.contains_key(key) || held.len() < self.capacity {
            held.insert(key.to_string(), now);
            return true;
        }
        false
    }

    /// Frees the slot of `key`, if it holds one.
    pub fn release(&self, key: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(key);
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_capacity_upgrades_run_at_once_and_a_finished_one_frees_its_slot() {
        let slots = UpgradeSlots::new(2, Duration::from_secs(300));
        let now = Instant::now();
        assert!(slots.try_hold("ml/a", now));
        assert!(slots.try_hold("ml/b", now));
        assert!(!slots.try_hold("ml/c", now), "the third waits");
        assert!(slots.try_hold("ml/a", now), "a holder keeps its slot");
        slots.release("ml/a");
        assert!(slots.try_hold("ml/c", now));
        assert_eq!(slots.in_use(), 2);
    }

    #[test]
    fn a_slot_nobody_refreshes_is_freed() {
        let slots = UpgradeSlots::new(1, Duration::from_secs(60));
        let start = Instant::now();
        assert!(slots.try_hold("ml/deleted", start));
        assert!(!slots.try_hold("ml/next", start + Duration::from_secs(59)));
        assert!(slots.try_hold("ml/next", start + Duration::from_secs(60)));
    }
}
