//! `ISSUE_RATE_PER_MIN`: how many `POST /queue/tokens` one client address may make per minute,
//! with `governor`'s keyed GCRA limiter.
//!
//! - **What counts**: every request to that path, whatever it is answered, counted before its
//!   body is read (see `crate::guard`), so a flood of malformed requests is limited too.
//! - **Rolling**: GCRA with a burst of N and one cell back every 60/N s: N requests at once,
//!   then one more each 60/N s, with no window edge to exploit.
//! - **Keys**: an IPv4 address, or the /64 network of an IPv6 address (one subscriber line
//!   holds a whole /64, so a client cannot escape the limit by walking its own prefix).
//! - **Bounded memory**: at most `max_keys` addresses are tracked. When the table is full it
//!   is pruned of addresses whose allowance is whole again (`retain_recent`), at most once a
//!   second so a flood of new addresses cannot turn pruning into a CPU sink; addresses that
//!   still find it full share one overflow allowance. That fails closed: under a flood from
//!   more than `max_keys` addresses newcomers may wait, but nobody gets past the limit and the
//!   table never grows.

use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
use governor::{Quota, RateLimiter};

/// A keyed state store that holds at most `cap` keys plus one shared overflow key.
#[derive(Debug)]
pub struct CappedStore<K: Hash + Eq + Clone> {
    map: DashMapStateStore<K>,
    cap: usize,
    overflow: K,
}

impl<K: Hash + Eq + Clone> StateStore for CappedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Concurrent newcomers may overshoot the cap by at most the number of HTTP workers.
        if self.map.len() >= self.cap && !self.map.contains_key(key) {
            return self.map.measure_and_replace(&self.overflow, f);
        }
        self.map.measure_and_replace(key, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for CappedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.map, drop_below);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The issue rate limit, over any clock (tests move a fake one).
pub struct IssueLimiter<C: Clock = DefaultClock> {
    limiter: RateLimiter<IpAddr, CappedStore<IpAddr>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    max_keys: usize,
    last_prune: Mutex<Option<C::Instant>>,
    per_min: u32,
}

/// The overflow key: an address no client has (`::` is never a peer).
const OVERFLOW: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

impl IssueLimiter<DefaultClock> {
    /// `per_min` requests per address per minute, at most `max_keys` addresses tracked;
    /// `None` when `per_min` is 0 (no limit).
    #[must_use]
    pub fn per_minute(per_min: u32, max_keys: usize) -> Option<Self> {
        Self::with_clock(per_min, max_keys, DefaultClock::default())
    }
}

impl<C: Clock + Clone> IssueLimiter<C> {
    /// As [`IssueLimiter::per_minute`], on `clock`.
    #[must_use]
    pub fn with_clock(per_min: u32, max_keys: usize, clock: C) -> Option<Self> {
        let n = NonZeroU32::new(per_min)?;
        let store = CappedStore { map: DashMapStateStore::default(), cap: max_keys.max(1), overflow: OVERFLOW };
        let limiter = RateLimiter::new(Quota::per_minute(n), store, clock.clone());
        Some(Self { limiter, clock, max_keys: max_keys.max(1), last_prune: Mutex::new(None), per_min })
    }

    /// Counts one request from `client`: `Ok` when it may proceed, `Err(wait)` with how long
    /// until it may when it is over the limit.
    ///
    /// # Errors
    /// The wait until the next request from this address is allowed.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() >= self.max_keys {
            self.prune();
        }
        self.limiter.check_key(&key(client)).map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Addresses tracked now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Drops addresses whose allowance is whole again, at most once a second.
    fn prune(&self) {
        let now = self.clock.now();
        let Ok(mut last) = self.last_prune.try_lock() else {
            return; // another worker is pruning right now
        };
        let due = last.is_none_or(|at| now.duration_since(at) >= Nanos::from(Duration::from_secs(1)));
        if due {
            *last = Some(now);
            self.limiter.retain_recent();
        }
    }
}

impl<C: Clock> std::fmt::Debug for IssueLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueLimiter")
            .field("per_min", &self.per_min)
            .field("max_keys", &self.max_keys)
            .field("tracked", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

/// The rate-limit key of an address: itself for IPv4, its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn n_per_minute_then_a_wait_then_one_more_cell_per_sixtieth_of_n() {
        let clock = FakeRelativeClock::default();
        let limit = IssueLimiter::with_clock(3, 100, clock.clone()).unwrap();
        for _ in 0..3 {
            assert_eq!(limit.check(ip(1)), Ok(()));
        }
        let wait = limit.check(ip(1)).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20), "{wait:?}");
        assert_eq!(limit.check(ip(2)), Ok(()), "another address has its own allowance");
        clock.advance(Duration::from_secs(20));
        assert_eq!(limit.check(ip(1)), Ok(()));
        assert!(limit.check(ip(1)).is_err());
    }

    #[test]
    fn zero_is_no_limit() {
        assert!(IssueLimiter::per_minute(0, 10).is_none());
    }

    #[test]
    fn memory_stays_bounded_however_many_addresses_come() {
        let clock = FakeRelativeClock::default();
        let limit = IssueLimiter::with_clock(2, 50, clock.clone()).unwrap();
        for n in 0..10_000 {
            let _ = limit.check(ip(n));
            assert!(limit.tracked() <= 51, "{} keys tracked", limit.tracked());
        }
        // Past the cap newcomers share one allowance: they cannot get around the limit.
        assert!(limit.check(ip(20_000)).is_err());
        // Once the tracked addresses' allowances are whole again, pruning makes room.
        clock.advance(Duration::from_secs(61));
        assert_eq!(limit.check(ip(20_001)), Ok(()));
        assert!(limit.tracked() <= 2, "{} keys tracked after pruning", limit.tracked());
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64() {
        let clock = FakeRelativeClock::default();
        let limit = IssueLimiter::with_clock(1, 100, clock).unwrap();
        assert_eq!(limit.check("2001:db8:1:2::1".parse().unwrap()), Ok(()));
        assert!(limit.check("2001:db8:1:2:ffff::9".parse().unwrap()).is_err());
        assert_eq!(limit.check("2001:db8:1:3::1".parse().unwrap()), Ok(()));
    }
}
