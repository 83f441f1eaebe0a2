//! Presence without a store write per poll: an instance notes in memory which WAITING tokens
//! were polled or re-joined, and the scheduler hands each room's batch to its line
//! (`QueueStore::note_seen`) at every check, one write per room per check. A token is present
//! while it was seen within `abandon_after` ([`crate::queue::AdmissionPolicy::is_present`]).
//!
//! Sights are kept in time buckets of [`BUCKET`] (the contract allows up to 5 s): a token is
//! handed over as seen at the start of the bucket its latest sight fell in, and a token already
//! handed over in the current bucket is not handed over again until the next one (it would
//! write the same time). So a buyer polling every second costs the store one write per
//! bucket, not one per check, and the stored sight of a token last polled at `p` lies in
//! `(p - BUCKET, p]`: with checks every second, a token silent for `abandon_after + 5 s` is
//! certainly absent and one polled within `abandon_after - 5 s` certainly present, as the
//! contract says.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

use crate::queue::TokenValue;
use crate::room::RoomId;

/// The width of a presence bucket.
pub const BUCKET: Duration = Duration::seconds(4);

/// The start of the bucket `at` falls in (buckets are aligned on the Unix epoch).
#[must_use]
pub fn bucket_start(at: OffsetDateTime) -> OffsetDateTime {
    let width = BUCKET.whole_microseconds();
    let micros = at.unix_timestamp_nanos() / 1_000;
    let start = micros.div_euclid(width) * width;
    OffsetDateTime::from_unix_timestamp_nanos(start * 1_000).unwrap_or(at)
}

/// The tokens seen since the last flush, per room, each with the bucket of its latest sight,
/// and those already handed over in the current bucket. Only rooms that drop absent places
/// note anything; `main` never does.
#[derive(Debug, Default)]
pub struct Sightings {
    book: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    /// The latest bucket a sight fell in: the one `sent` belongs to.
    bucket: Option<OffsetDateTime>,
    /// Seen and not yet handed over, with the bucket of the latest sight.
    pending: HashMap<RoomId, HashMap<TokenValue, OffsetDateTime>>,
    /// Handed over as seen in `bucket` already: a sight in the same bucket would write the
    /// same time again.
    sent: HashMap<RoomId, HashSet<TokenValue>>,
}

/// One room's sights to hand over: its line, the bucket they fell in, the tokens.
pub type Batch = (RoomId, OffsetDateTime, Vec<TokenValue>);

impl Sightings {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes that `value` (a token of `room`) was seen at `now`.
    pub fn note(&self, room: &RoomId, value: &TokenValue, now: OffsetDateTime) {
        let bucket = bucket_start(now);
        let mut book = self.book();
        if book.bucket == Some(bucket) {
            if book.sent.get(room).is_some_and(|sent| sent.contains(value)) {
                return;
            }
        } else if book.bucket.is_none_or(|current| bucket > current) {
            // A new bucket: what was handed over in the last one is due again.
            book.bucket = Some(bucket);
            book.sent.clear();
        }
        match book.pending.get_mut(room) {
            Some(seen) => match seen.get_mut(value) {
                Some(at) => *at = (*at).max(bucket),
                None => {
                    seen.insert(value.clone(), bucket);
                }
            },
            None => {
                book.pending.insert(room.clone(), HashMap::from([(value.clone(), bucket)]));
            }
        }
    }

    /// Everything noted since the last call, per room and bucket, leaving it out of the book;
    /// what fell in the current bucket is kept as sent until that bucket ends.
    #[must_use]
    pub fn drain(&self) -> Vec<Batch> {
        let mut book = self.book();
        let taken = std::mem::take(&mut book.pending);
        let current = book.bucket;
        let mut batches: Vec<Batch> = Vec::with_capacity(taken.len());
        for (room, seen) in taken {
            let mut by_bucket: HashMap<OffsetDateTime, Vec<TokenValue>> = HashMap::new();
            for (value, at) in seen {
                if Some(at) == current {
                    book.sent.entry(room.clone()).or_default().insert(value.clone());
                }
                by_bucket.entry(at).or_default().push(value);
            }
            batches.extend(by_bucket.into_iter().map(|(at, values)| (room.clone(), at, values)));
        }
        batches.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        batches
    }

    /// Puts back a batch the store could not take, so the next flush tries it again.
    pub fn restore(&self, (room, at, values): Batch) {
        let mut book = self.book();
        if let Some(sent) = book.sent.get_mut(&room) {
            for value in &values {
                sent.remove(value);
            }
        }
        let seen = book.pending.entry(room).or_default();
        for value in values {
            let entry = seen.entry(value).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn buckets_start_on_multiples_of_their_width() {
        let t = at(5) + Duration::milliseconds(300);
        let start = bucket_start(t);
        assert_eq!(start.unix_timestamp() % BUCKET.whole_seconds(), 0);
        assert!(start <= t && t - start < BUCKET);
        assert_eq!(bucket_start(start), start);
    }

    #[test]
    fn a_token_is_handed_over_once_per_bucket_as_seen_in_its_bucket() {
        let book = Sightings::default();
        let room = RoomId::parse("tour").unwrap_or_else(|_| RoomId::main());
        let a = TokenValue::from_bytes([1; 32]).in_room(&room);
        let b = TokenValue::from_bytes([2; 32]).in_room(&room);
        let t = bucket_start(at(0));
        book.note(&room, &a, t);
        book.note(&room, &a, t + Duration::seconds(1));
        assert_eq!(book.drain(), vec![(room.clone(), t, vec![a.clone()])]);
        // Seen again in the same bucket: not handed over again; another token is.
        book.note(&room, &a, t + Duration::seconds(2));
        book.note(&room, &b, t + Duration::seconds(2));
        assert_eq!(book.drain(), vec![(room.clone(), t, vec![b.clone()])]);
        // A refused batch comes back with the next flush.
        book.restore((room.clone(), t, vec![b.clone()]));
        assert_eq!(book.drain(), vec![(room.clone(), t, vec![b])]);
        // The next bucket takes `a` again, as seen in that bucket even when handed over later.
        book.note(&room, &a, t + BUCKET);
        assert_eq!(book.drain(), vec![(room.clone(), t + BUCKET, vec![a.clone()])]);
        assert_eq!(book.drain(), vec![]);
        book.note(&room, &a, t + BUCKET * 2 + Duration::seconds(1));
        assert_eq!(book.drain(), vec![(room, t + BUCKET * 2, vec![a])]);
    }
}
