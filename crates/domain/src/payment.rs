//! Payments.

use time::OffsetDateTime;

use crate::ids::{PaymentId, ReservationId, UserId};
use crate::money::Won;

/// A completed payment of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Its id.
    pub id: PaymentId,
    /// What was paid.
    pub reservation_id: ReservationId,
    /// Who paid.
    pub user_id: UserId,
    /// How much (the reservation's price).
    pub amount: Won,
    /// The payer's balance right after.
    pub balance_after: Won,
    /// When.
    pub paid_at: OffsetDateTime,
}
