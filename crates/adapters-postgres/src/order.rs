//! A drawn line's order, kept as its seed rather than as rewritten rows.
//!
//! A draw orders the `P` entrants by `room::drawn_positions(seed, P)`. Rewriting the `seq` of
//! every entrant is one non-HOT update per token, each with a new entry in every index of
//! `queue_tokens`: for a pre-queue of a million that is minutes of index churn on a small
//! server, far past the draw's budget. So the draw only makes the entrants the first `P`
//! *arrivals* (usually they are already: they came first; a few tokens near the opening may
//! need a move) and records the seed; the stored `seq` stays the arrival number, and the
//! line's `seq` (the domain's) is [`Order::position`] of it: `drawn_positions(seed, P)[a - 1]`
//! for an arrival `a <= P`, `a` after them. The permutation is recomputed from the seed
//! (the domain's function: every instance and the operator get the same order) once per
//! process and line, and kept with its inverse, which admission uses to find the tokens at
//! the next positions.
//!
//! Every read of a token maps its `seq` through the order of its line, read in the same
//! statement as the token (the cursor row holds the draw), so a reader sees a token either
//! before the draw (no draw, arrival order) or after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use domain::ports::StoreError;
use domain::queue::DrawRecord;
use domain::room::{drawn_positions, RoomId};

/// The permutation of one draw and its inverse, 1-based values at 0-based indexes.
#[derive(Debug)]
struct Perm {
    record: DrawRecord,
    /// `position[a - 1]`: the drawn position of arrival `a`.
    position: Vec<u32>,
    /// `arrival[p - 1]`: the arrival at drawn position `p`.
    arrival: Vec<u32>,
}

/// The drawn orders this process has computed, by line; shared by every clone of a store.
#[derive(Debug, Default)]
pub(crate) struct Orders {
    perms: Mutex<HashMap<RoomId, Arc<Perm>>>,
}

impl Orders {
    /// The order of `room`'s line given its draw (`None`: not drawn, arrival order).
    pub(crate) fn of(&self, room: &RoomId, draw: Option<DrawRecord>) -> Result<Order, StoreError> {
        let Some(record) = draw else { return Ok(Order(None)) };
        if record.entrants == 0 {
            return Ok(Order(None));
        }
        let mut perms = self.perms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(perm) = perms.get(room).filter(|p| p.record == record) {
            return Ok(Order(Some(perm.clone())));
        }
        let too_many = || StoreError::Internal(format!("a draw of {} entrants is too large", record.entrants));
        let entrants = usize::try_from(record.entrants).map_err(|_| too_many())?;
        let position: Vec<u32> = drawn_positions(record.seed, record.entrants)
            .into_iter()
            .map(|p| u32::try_from(p).map_err(|_| too_many()))
            .collect::<Result<_, _>>()?;
        let mut arrival = vec![0_u32; entrants];
        for (a, &p) in (1_u32..).zip(&position) {
            let slot = usize::try_from(p).ok().and_then(|p| p.checked_sub(1)).and_then(|i| arrival.get_mut(i));
            *slot.ok_or_else(|| StoreError::Internal("a drawn position out of range".into()))? = a;
        }
        let perm = Arc::new(Perm { record, position, arrival });
        perms.insert(room.clone(), perm.clone());
        Ok(Order(Some(perm)))
    }
}

/// A line's order: arrival order, or a draw's.
#[derive(Debug, Clone)]
pub(crate) struct Order(Option<Arc<Perm>>);

impl Order {
    /// Arrival order (a line without a draw).
    pub(crate) fn arrival() -> Self {
        Self(None)
    }

    /// Whether positions `from + 1 ..` are arrivals as they are (no drawn entrant among them).
    pub(crate) fn is_identity_after(&self, from: i64) -> bool {
        self.0.as_ref().is_none_or(|p| from >= i64::try_from(p.record.entrants).unwrap_or(i64::MAX))
    }

    /// The line's `seq` of the token that arrived `arrival`-th (the stored `seq`).
    pub(crate) fn position(&self, arrival: i64) -> i64 {
        self.0
            .as_ref()
            .and_then(|p| usize::try_from(arrival).ok().and_then(|a| a.checked_sub(1)).and_then(|i| p.position.get(i)))
            .map_or(arrival, |&p| i64::from(p))
    }

    /// The stored `seq` (arrival) of the token at the line's `seq` `position`.
    pub(crate) fn arrival_at(&self, position: i64) -> i64 {
        self.0
            .as_ref()
            .and_then(|p| usize::try_from(position).ok().and_then(|x| x.checked_sub(1)).and_then(|i| p.arrival.get(i)))
            .map_or(position, |&a| i64::from(a))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use time::OffsetDateTime;

    use super::*;

    #[test]
    fn positions_follow_the_draw_and_arrivals_invert_them() {
        let orders = Orders::default();
        let room = RoomId::parse("tour").unwrap();
        let record = DrawRecord { at: OffsetDateTime::UNIX_EPOCH, entrants: 50, seed: 9 };
        let order = orders.of(&room, Some(record)).unwrap();
        let drawn = drawn_positions(9, 50);
        for a in 1..=50_i64 {
            let p = order.position(a);
            assert_eq!(u64::try_from(p).unwrap(), drawn[usize::try_from(a - 1).unwrap()]);
            assert_eq!(order.arrival_at(p), a);
        }
        assert_eq!((order.position(51), order.arrival_at(51)), (51, 51), "later arrivals keep their place");
        assert!(!order.is_identity_after(49) && order.is_identity_after(50));
        assert_eq!(orders.of(&room, None).unwrap().position(3), 3);
    }
}
