//! Connections per source address, for the tracker's HTTP server and the peer listener.
//!
//! Both servers cap the connections they serve at once with a semaphore taken before `accept`,
//! so excess connections wait in the kernel's backlog. On its own that cap lets one address
//! that opens many idle or trickling connections (slowloris) hold every permit until its
//! timeouts expire, and honest clients wait behind it. [`AddressLimit`] closes that gap: a
//! connection from an address that already holds its share is closed at once, before it takes
//! any time or memory, so one address can never occupy more than its share of the global cap.
//!
//! A source is an IPv4 address or an IPv6 /64 ([`source_key`]): an IPv6 client usually owns a
//! whole /64 and could otherwise take a new share from each of its 2^64 addresses.
//!
//! What it will not do: stop many addresses acting together; the global cap and the read
//! timeouts bound what they can hold, for as long as the timeouts allow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

/// The unit one client controls, for limits per source: an IPv4 address (also when it comes
/// IPv4-mapped in IPv6), or the /64 of an IPv6 address.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
        v4 => v4,
    }
}

/// Counts the open connections of each source ([`source_key`]), up to a fixed maximum each.
///
/// The map holds only addresses with at least one open connection, so its size is bounded
/// by the connections open at once (which the global cap bounds).
#[derive(Debug)]
pub struct AddressLimit {
    max_per_address: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressLimit {
    /// A limit of `max_per_address` open connections per source address (at least 1).
    pub fn new(max_per_address: usize) -> Arc<AddressLimit> {
        Arc::new(AddressLimit {
            max_per_address: max_per_address.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more connection from `ip`, or `None` when `ip` already has its share open.
    /// The count drops when the returned permit is dropped.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressPermit> {
        let ip = source_key(ip);
        let mut open = self.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(AddressPermit {
            limit: Arc::clone(self),
            ip,
        })
    }

    /// Connections open from `ip`'s source now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().get(&source_key(ip)).copied().unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // The map is consistent after every statement; a panic elsewhere cannot break it.
        self.open.lock()
    }
}

/// One open connection counted against its address; dropping it releases the slot.
#[derive(Debug)]
pub struct AddressPermit {
    limit: Arc<AddressLimit>,
    ip: IpAddr,
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut open = self.limit.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_and_no_more() {
        let limit = AddressLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.try_acquire(a).unwrap();
        let _second = limit.try_acquire(a).unwrap();
        assert!(
            limit.try_acquire(a).is_none(),
            "a third from the same address"
        );
        let _other = limit
            .try_acquire(b)
            .expect("another address is not affected");
        drop(first);
        assert_eq!(limit.open_from(a), 1);
        let _again = limit
            .try_acquire(a)
            .expect("a slot freed by a closed connection");
    }

    #[test]
    fn closed_addresses_leave_the_map() {
        let limit = AddressLimit::new(1);
        for i in 0..100u8 {
            drop(limit.try_acquire(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert!(limit.lock().is_empty());
    }

    #[test]
    fn an_ipv6_client_gets_one_share_for_its_whole_64() {
        let limit = AddressLimit::new(2);
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other_in_64: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let next_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _a = limit.try_acquire(one).unwrap();
        let _b = limit.try_acquire(other_in_64).unwrap();
        assert!(
            limit
                .try_acquire("2001:db8:1:2::99".parse().unwrap())
                .is_none()
        );
        assert_eq!(limit.open_from(one), 2);
        assert!(
            limit.try_acquire(next_64).is_some(),
            "another /64 is another client"
        );
        // An IPv4-mapped address counts as the IPv4 address it carries.
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let _c = limit.try_acquire(v4).unwrap();
        let _d = limit.try_acquire(mapped).unwrap();
        assert!(limit.try_acquire(v4).is_none());
        assert_eq!(source_key(mapped), v4);
    }
}
