//! The commit agreement (`domain::call`): a store never makes a write a caller has given up
//! on. The HTTP layer abandons a call whose store has not answered by its deadline and answers
//! 503, which promises that nothing was done; every store MUST ask `call::commit_point()` right
//! before a write it cannot take back, and refuse it (`StoreError::Timeout`) when the caller has
//! gone. These cases make every such write under a watch that was abandoned first.

use domain::call::CommitWatch;
use domain::catalogue::SeatStatus;
use domain::error::{ChargeError, IssueTokenError, PayError, ReserveError, StoreError};
use domain::money::Won;
use domain::reservation::ReservationStatus;

use crate::fixture::Fixture;
use crate::Harness;

fn gone() -> CommitWatch {
    let watch = CommitWatch::new();
    assert!(watch.abandon(), "a running call can be abandoned");
    watch
}

/// An issue for a caller that gave up stores no token: the user's next issue creates one.
pub fn nothing_is_issued_for_a_caller_that_gave_up<H: Harness>() {
    let fx = Fixture::<H>::empty(crate::fixture::Admission::default());
    let user = fx.user();
    let refused = gone().attach(|| fx.app.issue_token(user));
    assert!(matches!(refused, Err(IssueTokenError::Store(StoreError::Timeout(_)))), "{refused:?}");
    let issued = fx.app.issue_token(user).expect("issue");
    assert!(issued.created && issued.view.token.seq == 1, "nothing was stored, no number was taken");
}

/// A hold, a charge and a payment for a caller that gave up change nothing.
pub fn nothing_is_written_for_a_caller_that_gave_up<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let user = who.user_id();
    let (schedule, seat) = (fx.schedule(0).id, fx.seat(0, 1).id);

    let hold = gone().attach(|| fx.app.reserve(&who, schedule, seat));
    assert!(matches!(hold, Err(ReserveError::Store(StoreError::Timeout(_)))), "{hold:?}");
    assert_eq!(fx.seat_status(&who, 0, 1), SeatStatus::Available);
    let charge = gone().attach(|| fx.app.charge(user, 500_000, None));
    assert!(matches!(charge, Err(ChargeError::Store(StoreError::Timeout(_)))), "{charge:?}");
    assert_eq!(fx.app.balance(user).expect("balance"), Won::ZERO);

    fx.charge(user, 500_000);
    let r = fx.hold(&who, 0, 1);
    let pay = gone().attach(|| fx.pay(&who, r.id));
    assert!(matches!(pay, Err(PayError::Store(StoreError::Timeout(_)))), "{pay:?}");
    assert_eq!(fx.stored(r.id).status, ReservationStatus::Held);
    assert_eq!(fx.app.balance(user).expect("balance"), Won::new(500_000));
    assert!(fx.pay(&who, r.id).is_ok(), "the token was not used up: it pays now");
}
