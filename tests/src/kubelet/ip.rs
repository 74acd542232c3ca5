//! Loopback addresses for pods: each pod gets its own 127.X.Y.Z so that every pod can listen on
//! the same port, as pods on a real network do. The second octet is derived from the process id,
//! so two kubelets on one machine rarely hand out the same addresses.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Hands out loopback addresses in order, skipping those in use; never 127.0.0.1.
#[derive(Debug)]
pub struct IpPool {
    next: u32,
    in_use: HashSet<Ipv4Addr>,
}

impl IpPool {
    /// A pool whose first address is 127.`second_octet`.0.2.
    pub fn starting_at(second_octet: u8) -> Self {
        let first = Ipv4Addr::new(127, second_octet.max(1), 0, 2);
        Self {
            next: u32::from(first),
            in_use: HashSet::new(),
        }
    }

    /// A pool for this process: 127.1.0.2 upward, offset by the process id.
    pub fn for_this_process() -> Self {
        let offset = (std::process::id() % 200) as u8;
        Self::starting_at(1 + offset)
    }

    /// The next free address.
    pub fn allocate(&mut self) -> Ipv4Addr {
        loop {
            let candidate = Ipv4Addr::from(self.next);
            self.next = advance(self.next);
            if usable(candidate) && !self.in_use.contains(&candidate) {
                self.in_use.insert(candidate);
                return candidate;
            }
        }
    }

    /// Takes `ip` (a pod's address from before a kubelet restart) if it is a pod address and
    /// free.
    pub fn claim(&mut self, ip: Ipv4Addr) -> bool {
        ip.octets()[0] == 127 && usable(ip) && self.in_use.insert(ip)
    }

    /// Gives `ip` back; it is handed out again only once the pool wraps around.
    pub fn release(&mut self, ip: Ipv4Addr) {
        self.in_use.remove(&ip);
    }
}

fn advance(current: u32) -> u32 {
    let next = current.wrapping_add(1);
    if Ipv4Addr::from(next).octets()[0] == 127 {
        next
    } else {
        u32::from(Ipv4Addr::new(127, 1, 0, 2))
    }
}

/// Not the host's own 127.0.0.1, no network or broadcast-looking last octet.
fn usable(ip: Ipv4Addr) -> bool {
    let [_, b, _, d] = ip.octets();
    b != 0 && d != 0 && d != 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_in_order_and_skips_edge_octets() {
        let mut pool = IpPool::starting_at(1);
        assert_eq!(pool.allocate(), Ipv4Addr::new(127, 1, 0, 2));
        assert_eq!(pool.allocate(), Ipv4Addr::new(127, 1, 0, 3));
        let mut pool = IpPool {
            next: u32::from(Ipv4Addr::new(127, 1, 0, 254)),
            in_use: HashSet::new(),
        };
        assert_eq!(pool.allocate(), Ipv4Addr::new(127, 1, 0, 254));
        assert_eq!(pool.allocate(), Ipv4Addr::new(127, 1, 1, 1));
    }

    #[test]
    fn wraps_around_and_skips_addresses_in_use() {
        let mut pool = IpPool {
            next: u32::from(Ipv4Addr::new(127, 255, 255, 254)),
            in_use: HashSet::from([Ipv4Addr::new(127, 1, 0, 2)]),
        };
        assert_eq!(pool.allocate(), Ipv4Addr::new(127, 255, 255, 254));
        assert_eq!(pool.allocate(), Ipv4Addr::new(127, 1, 0, 3));
    }

    #[test]
    fn claims_free_pod_addresses_only() {
        let mut pool = IpPool::starting_at(1);
        let taken = pool.allocate();
        assert!(!pool.claim(taken));
        assert!(pool.claim(Ipv4Addr::new(127, 9, 0, 7)));
        assert!(!pool.claim(Ipv4Addr::new(127, 9, 0, 7)));
        assert!(!pool.claim(Ipv4Addr::LOCALHOST));
        assert!(!pool.claim(Ipv4Addr::new(10, 0, 0, 7)));
        pool.release(taken);
        assert!(pool.claim(taken));
    }

    #[test]
    fn never_hands_out_the_hosts_address() {
        let mut pool = IpPool::starting_at(0);
        let ip = pool.allocate();
        assert_ne!(ip, Ipv4Addr::LOCALHOST);
        assert_eq!(ip.octets()[1], 1);
    }
}
