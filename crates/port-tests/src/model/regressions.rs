//! Explicit sequences, replayed step by step on every store ([`run_all`]): a full purchase as a
//! smoke test, and each shrunk failure that showed a real bug, kept as it shrank, so the bug
//! stays fixed whatever the generators do later.

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
