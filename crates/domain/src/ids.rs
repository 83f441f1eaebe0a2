//! Identifier newtypes. Every id is a UUID on the wire and in storage; the newtypes keep a
//! `SeatId` from ever being passed where a `ScheduleId` is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID (from storage or a parsed request).
            #[must_use]
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// A fresh random (v4) id.
            #[must_use]
            pub fn random() -> Self {
                Self(Uuid::new_v4())
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

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
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
