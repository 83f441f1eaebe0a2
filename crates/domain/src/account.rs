//! Accounts and their ledger. Every balance change is a ledger entry, so an account's balance
//! always equals the sum of its entries' amounts.

use time::OffsetDateTime;

use crate::ids::{LedgerEntryId, PaymentId, ReservationId, UserId};
use crate::money::Won;

spelled_enum! {
    /// Why a balance changed, spelled as in the contract (`CHARGE`, `PAYMENT`) by `strum`.
    pub enum LedgerKind {
        /// Money in.
        Charge,
        /// Money out, for a reservation.
        Payment,
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

/// A charge for a store to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditRequest {
    /// Whose account.
    pub user: UserId,
    /// How much (validated, > 0).
    pub amount: Won,
    /// The balance may not pass this ([`crate::money::credit_fits`]).
    pub limit: Won,
    /// The id of the CHARGE ledger entry to append.
    pub entry: LedgerEntryId,
    /// When.
    pub at: OffsetDateTime,
}

/// The result of crediting an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOutcome {
    /// Credited; the new balance.
    Credited(Won),
    /// Not credited: the balance would exceed the limit. The unchanged balance.
    LimitExceeded(Won),
}

/// Bounds of one page of the balance history (`limit`).
pub const HISTORY_PAGE: std::ops::RangeInclusive<u32> = 1..=100;

/// The default page size of the balance history.
pub const HISTORY_PAGE_DEFAULT: u32 = 50;

/// Which part of a ledger to read: newest first, at most `limit` entries, older than the entry
/// `before` when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerQuery {
    /// Only entries older than this one (which must be the user's).
    pub before: Option<LedgerEntryId>,
    /// At most this many.
    pub limit: u32,
}

/// One page of a ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    /// Where the next (older) page starts, when there is one.
    pub next_before: Option<LedgerEntryId>,
}
