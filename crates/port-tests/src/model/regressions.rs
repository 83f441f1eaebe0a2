//! Explicit cases that do not depend on the generators: sequences replayed step by step on
//! every store ([`run_all`]: a full purchase as a smoke test, and each shrunk sequential
//! failure that showed a real bug, kept as it shrank), and races the concurrent test found,
//! repeated until they would show (each adapter's `tests/model.rs` runs them).

use crate::model::op::{Boundary, ClockMove, Op, ResRef, SeatRef, TokenRef};
use crate::model::{replay, ModelStore};

/// A named sequence.
pub type Sequence = (&'static str, &'static [Op]);

/// A purchase from the queue to the seat: the hold limit, a keyed payment replayed after its
/// token was used up and its key refused for another request, a token that pays once, a new
/// turn in line, a hold paid at its exact lapse, and a key past its expiry running again.
const PURCHASE: &[Op] = &[
    Op::Issue(1),
    Op::Poll(TokenRef::Latest(1)),
    Op::Admit,
    Op::Reserve(TokenRef::Latest(1), SeatRef::Seat(0)),
    Op::Reserve(TokenRef::Latest(1), SeatRef::Seat(3)),
    Op::Reserve(TokenRef::Latest(1), SeatRef::Seat(1)),
    Op::Pay(TokenRef::Latest(1), ResRef::LatestOf(1), Some(0)),
    Op::Pay(TokenRef::Latest(1), ResRef::LatestOf(1), Some(0)),
    Op::Retry(false),
    Op::Pay(TokenRef::Latest(1), ResRef::Recent(1), None),
    Op::Issue(1),
    Op::Advance(ClockMove::To(Boundary::NextAdmission, 0)),
    Op::Admit,
    Op::Advance(ClockMove::To(Boundary::HoldLapse, 0)),
    Op::Pay(TokenRef::Latest(1), ResRef::Recent(1), None),
    Op::ReleaseHolds,
    Op::Advance(ClockMove::To(Boundary::KeyExpiry, 0)),
    Op::Retry(true),
    Op::PurgeKeys,
    Op::History(1, None, Some(2)),
];

/// Every kept sequence.
pub const SEQUENCES: &[Sequence] = &[("purchase", PURCHASE)];

/// Replays every kept sequence on store `H`.
///
/// # Panics
/// Naming the sequence, when the store diverges from the model.
pub fn run_all<H: ModelStore>() {
    for (name, ops) in SEQUENCES {
        let run = std::panic::catch_unwind(|| replay::<H>(ops));
        if let Err(e) = run {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("kept sequence {name:?} failed:\n{why}");
        }
    }
    crate::model::print_coverage("kept sequences'");
}

/// Rounds of [`an_issue_racing_an_admission_answers_as_of_after_it`].
pub const ISSUE_ADMISSION_ROUNDS: usize = 150;

/// Found by the concurrent model test on PostgreSQL (a racing `Issue` and `Admit` that no
/// order explains): an issue that commits after an admission that did not see its token
/// answered the position and wait of *before* that admission (position 2, wait 0 s, where the
/// line then had it first, 60 s from its turn).
///
/// A race, so it is repeated: each round one user waits alone, the admission is due, and an
/// admission tick races a second user's issue. Admitting N = 2, the tick admits the newcomer
/// too if it saw it; so a newcomer still WAITING afterwards was issued after the tick, and its
/// answer must be the line as the tick left it: exactly what a read of it gives now (the clock
/// stands still).
///
/// # Panics
/// On the first round whose answer no order of the two calls explains.
pub fn an_issue_racing_an_admission_answers_as_of_after_it<H: crate::Harness>() {
    use crate::concurrency::race;
    use crate::fixture::{Admission, Fixture};
    use domain::queue::TokenStatus;

    let fx = Fixture::<H>::empty(Admission::batch(2, None));
    for round in 0..ISSUE_ADMISSION_ROUNDS {
        let first = fx.issue(fx.user());
        fx.advance(time::Duration::seconds(Admission::default().interval_secs));
        let newcomer = fx.user();
        let w = &fx.world;
        let (mut admitted, mut issued) = (None, None);
        for r in race(2, |i| if i == 0 { Err(w.app.admit()) } else { Ok(w.app.issue_token(newcomer)) }) {
            match r {
                Err(a) => admitted = Some(a.expect("admit")),
                Ok(i) => issued = Some(i.expect("issue")),
            }
        }
        let issued = issued.expect("the issue ran");
        let now = fx.app.read_token(issued.view.token.value.as_str()).expect("read the newcomer's token");
        if now.status == TokenStatus::Waiting {
            assert_eq!(
                (issued.view.position, issued.view.estimated_wait_secs),
                (now.position, now.estimated_wait_secs),
                "round {round}: the tick ({admitted:?}) did not admit the newcomer, so it was issued after \
                 the tick, yet its answer (position, wait) is not the line as the tick left it"
            );
        }
        fx.admit_all(&[first, issued.view.token]);
    }
}
