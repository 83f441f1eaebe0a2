//! Identifier newtypes. Every id is a UUID on the wire and in storage; the newtypes keep a
//! `SeatId` from ever being passed where a `ScheduleId` is expected. New ids come from the
//! [`crate::random::Randomness`] port, never from a generator of this crate's own.

use std::fmt;

use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID (from storage, a parsed request or the randomness port).
            #[must_use]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The UUID inside.
            #[must_use]
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(
    /// A user. Users are not registered: any UUID names one, and a user never charged has a
    /// balance of 0.
    UserId
);
uuid_id!(
    /// A concert (a title that plays on one or more schedules).
    ConcertId
);
uuid_id!(
    /// One performance of a concert at a given time.
    ScheduleId
);
uuid_id!(
    /// One seat of one schedule.
    SeatId
);
uuid_id!(
    /// A reservation (a hold on a seat, later paid or lapsed).
    ReservationId
);
uuid_id!(
    /// A payment of a reservation.
    PaymentId
);
uuid_id!(
    /// A ledger entry of an account.
    LedgerEntryId
);
