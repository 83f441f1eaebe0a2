//! Presence without a store write per poll: an instance notes in memory which WAITING tokens
//! were polled or re-joined, and the scheduler hands each room's batch to its line
//! (`QueueStore::note_seen`) at every check, one write per room per check. A token is present
//! while it was seen within `abandon_after` ([`crate::queue::AdmissionPolicy::is_present`]);
//! with checks every second a sight reaches the store at most a check late, well inside the
//! contract's 5 s buckets.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::queue::TokenValue;
use crate::room::RoomId;

/// The tokens seen since the last flush, per room. Only rooms that drop absent places note
/// anything; `main` never does.
#[derive(Debug, Default)]
pub struct Sightings {
    seen: Mutex<HashMap<RoomId, HashSet<TokenValue>>>,
}

impl Sightings {
    /// Notes that `value` (a token of `room`) was seen now.
    pub fn note(&self, room: &RoomId, value: &TokenValue) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.get_mut(room) {
            Some(set) => {
                if !set.contains(value) {
                    set.insert(value.clone());
                }
            }
            None => {
                seen.insert(room.clone(), HashSet::from([value.clone()]));
            }
        }
    }

    /// Everything noted since the last call, per room, leaving the book empty.
    #[must_use]
    pub fn drain(&self) -> Vec<(RoomId, Vec<TokenValue>)> {
        let taken = std::mem::take(&mut *self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        taken.into_iter().map(|(room, set)| (room, set.into_iter().collect())).collect()
    }

    /// Puts back a batch the store could not take, so the next flush tries it again.
    pub fn restore(&self, room: RoomId, values: Vec<TokenValue>) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.entry(room).or_default().extend(values);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_seen_twice_is_flushed_once_and_the_book_empties() {
        let book = Sightings::default();
        let room = RoomId::parse("tour").unwrap_or_else(|_| RoomId::main());
        let a = TokenValue::from_bytes([1; 32]).in_room(&room);
        book.note(&room, &a);
        book.note(&room, &a);
        assert_eq!(book.drain(), vec![(room.clone(), vec![a.clone()])]);
        assert!(book.drain().is_empty());
        book.restore(room.clone(), vec![a.clone()]);
        assert_eq!(book.drain(), vec![(room, vec![a])]);
    }
}
