//! Money. The won has no minor unit, so an amount is a whole number of won in an `i64`.

use std::fmt;

use thiserror::Error;

/// An amount of Korean won. Balances and prices are never negative; the type allows negative
/// values only so that arithmetic on it cannot overflow silently (use the checked helpers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Won(i64);

impl Won {
    /// Zero won.
    pub const ZERO: Self = Self(0);

    /// Wraps a number of won.
    #[must_use]
    pub const fn new(amount: i64) -> Self {
        Self(amount)
    }

    /// The number of won.
    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }

    /// `self + other`, `None` on overflow.
    #[must_use]
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.0.checked_add(other.0).map(Self)
    }

    /// `self - other`, `None` on overflow.
    #[must_use]
    pub fn checked_sub(self, other: Self) -> Option<Self> {
        self.0.checked_sub(other.0).map(Self)
    }
}

impl fmt::Display for Won {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KRW", self.0)
    }
}

/// The highest balance an account may hold (contract: `BALANCE_LIMIT` above it).
pub const BALANCE_LIMIT: Won = Won(10_000_000_000);

/// The balance rule of a charge: `balance + amount` may not pass `limit`. Stores that apply a
/// credit as one conditional statement restate this comparison in it (and say so); the
/// conformance suite checks both sides of the boundary on every store.
#[must_use]
pub fn credit_fits(balance: Won, amount: Won, limit: Won) -> bool {
    balance.checked_add(amount).is_some_and(|after| after <= limit)
}

/// The largest single charge (contract: `INVALID_AMOUNT` outside `1..=MAX_CHARGE`).
pub const MAX_CHARGE: i64 = 1_000_000_000;

/// A charge amount that passed validation: an integer in `1..=1_000_000_000` won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeAmount(Won);

/// Why an amount is not a valid charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a charge must be an integer between 1 and {MAX_CHARGE} won, got {0}")]
pub struct InvalidChargeAmount(pub i64);

impl ChargeAmount {
    /// Validates a requested charge.
    ///
    /// # Errors
    /// [`InvalidChargeAmount`] when `amount` is not in `1..=1_000_000_000`.
    pub fn new(amount: i64) -> Result<Self, InvalidChargeAmount> {
        if (1..=MAX_CHARGE).contains(&amount) {
            Ok(Self(Won(amount)))
        } else {
            Err(InvalidChargeAmount(amount))
        }
    }

    /// The validated amount.
    #[must_use]
    pub const fn won(self) -> Won {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charge_amount_accepts_exactly_one_to_one_billion() {
        assert_eq!(ChargeAmount::new(1).map(ChargeAmount::won), Ok(Won::new(1)));
        assert!(ChargeAmount::new(MAX_CHARGE).is_ok());
        assert_eq!(ChargeAmount::new(0), Err(InvalidChargeAmount(0)));
        assert_eq!(ChargeAmount::new(-5), Err(InvalidChargeAmount(-5)));
        assert_eq!(ChargeAmount::new(MAX_CHARGE + 1), Err(InvalidChargeAmount(MAX_CHARGE + 1)));
    }

    #[test]
    fn a_credit_fits_up_to_and_including_the_limit() {
        assert!(credit_fits(Won::new(9), Won::new(1), Won::new(10)));
        assert!(!credit_fits(Won::new(10), Won::new(1), Won::new(10)));
        assert!(!credit_fits(Won::new(i64::MAX), Won::new(1), Won::new(i64::MAX)));
    }

    #[test]
    fn checked_arithmetic_reports_overflow() {
        assert_eq!(Won::new(i64::MAX).checked_add(Won::new(1)), None);
        assert_eq!(Won::new(5).checked_sub(Won::new(7)), Some(Won::new(-2)));
    }
}
