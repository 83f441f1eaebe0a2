//! Randomness, injected: token values and every id the domain creates come from the
//! [`Randomness`] port, so tests (and the model-based suite) can replay a run exactly.
//! The operating system's generator lives in an adapter crate, not here.

use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::queue::TokenValue;

/// Where new token values and ids come from.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Randomness: Send + Sync {
    /// A fresh, unguessable token value (production: 256 bits from the OS).
    fn token(&self) -> TokenValue;

    /// A fresh id, unique with overwhelming probability (production: UUID v4).
    fn uuid(&self) -> Uuid;
}

/// A deterministic, *guessable* source for tests: the same seed gives the same sequence.
/// Never wire it into a server.
#[derive(Debug)]
pub struct SeededRandom {
    state: AtomicU64,
}

impl SeededRandom {
    /// A source starting at `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self { state: AtomicU64::new(seed) }
    }

    /// splitmix64: a well-known 64-bit mixer; each call advances a shared counter, so
    /// concurrent callers never get the same value.
    fn next(&self) -> u64 {
        let mut z = self.state.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes<const N: usize>(&self) -> [u8; N] {
        let mut out = [0_u8; N];
        for chunk in out.chunks_mut(8) {
            let word = self.next().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out
    }
}

impl Default for SeededRandom {
    fn default() -> Self {
        Self::new(0x5eed)
    }
}

impl Randomness for SeededRandom {
    fn token(&self) -> TokenValue {
        TokenValue::from_bytes(self.bytes::<32>())
    }

    fn uuid(&self) -> Uuid {
        uuid::Builder::from_random_bytes(self.bytes::<16>()).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_values_are_distinct_well_formed_and_repeatable() {
        let a = SeededRandom::new(1);
        let b = SeededRandom::new(1);
        let (t1, t2) = (a.token(), a.token());
        assert_ne!(t1, t2);
        assert_eq!(b.token(), t1);
        assert!(TokenValue::parse(t1.as_str()).is_ok());
        let id = a.uuid();
        assert_eq!(id.get_version_num(), 4);
        assert_ne!(id, a.uuid());
    }
}
