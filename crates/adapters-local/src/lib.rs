//! Process-local adapters: the implementations of the domain's ports that need the operating
//! system or this process's memory rather than a store.
//!
//! - [`SystemClock`]: the wall clock behind the domain's `Clock` port.
//! - [`store_clock::StoreClock`]: the `Clock` of an instance that shares its store: the
//!   store's time (`StoreTime`), sampled every second and carried on the monotonic clock.
//! - [`OsRandom`]: the operating system's generator behind the `Randomness` port (256-bit
//!   tokens, UUID v4 ids).
//! - [`poll_cache::CachedQueue`]: a decorator of a `QueueStore` that answers polls of WAITING
//!   tokens from memory, without blocking, for a line of a million.
//! - [`settings_cache::CachedSettings`]: a decorator of a `SettingsStore` that serves the
//!   waiting room's live settings from memory, at most one check period stale.
//! - [`rooms_cache::CachedRooms`], [`rooms_cache::CachedLines`]: the rooms from memory, at
//!   most one check period stale, and the poll cache in front of every room's line.
//! - [`async_lines::CachedAsyncLines`]: the poll caches in front of the front door's
//!   non-blocking queue calls, so what they issue and read is answered from memory next.
//! - [`ticker`]: the monotonic clock the caches measure freshness on.
//!
//! # Layout
//! One module per adapter; each decorator's module header says what it serves from memory,
//! how stale that may be, and what always goes to the store. Both decorators keep their copy
//! of the store's value in a `stamped::Stamped`, which refuses a read that started before
//! this instance's own change.

pub mod async_lines;
pub mod poll_cache;
pub mod rooms_cache;
pub mod settings_cache;
mod stamped;
pub mod store_clock;
pub mod ticker;

use domain::clock::{truncate_to_micros, Clock};
use domain::queue::TokenValue;
use domain::random::Randomness;
use time::OffsetDateTime;
use uuid::Uuid;

/// The wall clock, at microsecond precision.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate_to_micros(OffsetDateTime::now_utc())
    }
}

/// The operating system's random generator: 256-bit token values, UUID v4 ids.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Randomness for OsRandom {
    // The port cannot fail and a bearer token must not come from anything weaker than the OS
    // generator, so there is no non-panicking alternative: should the generator fail, this
    // panics. `Uuid::new_v4` (below) reads the same generator through the same `getrandom`
    // and panics as well, so no fallback through it could keep a request alive. On Linux,
    // `getrandom` fails only where neither the getrandom(2) call nor `/dev/urandom` is usable.
    #[allow(clippy::panic, reason = "no secure token can be made without the OS generator")]
    fn token(&self) -> TokenValue {
        let mut bytes = [0_u8; 32];
        if let Err(e) = getrandom::fill(&mut bytes) {
            panic!("the operating system's random generator failed: {e}");
        }
        TokenValue::from_bytes(bytes)
    }

    fn uuid(&self) -> Uuid {
        Uuid::new_v4()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_tokens_and_ids_are_distinct_and_well_formed() {
        let (a, b) = (OsRandom.token(), OsRandom.token());
        assert_ne!(a, b);
        assert!(TokenValue::parse(a.as_str()).is_ok());
        assert_eq!(OsRandom.uuid().get_version_num(), 4);
        assert_ne!(OsRandom.uuid(), OsRandom.uuid());
    }

    #[test]
    fn the_system_clock_has_microsecond_precision() {
        assert_eq!(SystemClock.now().nanosecond() % 1_000, 0);
    }
}
