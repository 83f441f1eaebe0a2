//! Accounts and their ledger. Every balance change is a ledger entry, so an account's balance
//! always equals the sum of its entries' amounts.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{LedgerEntryId, PaymentId, ReservationId, UserId};
use crate::money::Won;

/// Why a balance changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerKind {
    /// Money in.
    Charge,
    /// Money out, for a reservation.
    Payment,
}

impl LedgerKind {
    /// Stored spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "CHARGE",
            Self::Payment => "PAYMENT",
        }
    }

    /// Parses the stored spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CHARGE" => Some(Self::Charge),
            "PAYMENT" => Some(Self::Payment),
            _ => None,
        }
    }
}

/// One balance change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Its id.
    pub id: LedgerEntryId,
    /// Whose account.
    pub user_id: UserId,
    /// Charge or payment.
    pub kind: LedgerKind,
    /// Signed change: positive for a charge, negative for a payment.
    pub amount: Won,
    /// The balance right after this change.
    pub balance_after: Won,
    /// When.
    pub at: OffsetDateTime,
    /// For a payment: what it paid.
    pub payment_id: Option<PaymentId>,
    /// For a payment: the reservation it paid.
    pub reservation_id: Option<ReservationId>,
}

/// The result of crediting an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOutcome {
    /// Credited; the new balance.
    Credited(Won),
    /// Not credited: the balance would exceed the limit. The unchanged balance.
    LimitExceeded(Won),
}
