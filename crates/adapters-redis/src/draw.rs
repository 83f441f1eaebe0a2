//! The draw of a line's pre-queue ([`QueueStore::draw`]) in steps, so that Redis keeps
//! answering while a million tokens are reordered:
//!
//! 1. `draw_claim.lua` records the intent (time, opening, seed, how many WAITING tokens it
//!    reorders, and `base`, the stored `seq` of the first) under a lease of
//!    [`DrawTuning::lease`] owned by this call, or answers the recorded draw, `NotDue`, or that
//!    another owner holds it. The claimed tokens' stored `seq`s are `base..base + length` in
//!    list order (issue pushes each with the next `seq`, the sweep pops from the head; the
//!    claim checks the first and the last), so the owner reads none.
//! 2. The owner reads the claimed tokens' records, each one's value (its random part and its
//!    `seq`) and issue time ([`DrawTuning::chunk`] at a time, `HGETALL` of their buckets,
//!    pipelined: no script, since none of them changes while the draw runs), splits it into entrants (issued
//!    before the opening) and the rest, and orders it: entrant `i` (in the order of their
//!    values, byte-wise) at `room::drawn_positions(seed, P)[i]`, the rest behind in their
//!    `seq` order. The domain's own function draws; no Lua restates it.
//! 3. `draw_chunk.lua` writes that order, a chunk per script: the staging list in the new order
//!    and the chunk's slice of the position table (`{ns}:drawn`: 4 bytes big-endian per stored
//!    `seq` `s`, at byte `4 * (s - 1)`, the token's drawn `seq`), one `SETRANGE`. Idempotent
//!    and owner-checked, renewing the lease. No token's record is written: a million `HSET`s
//!    were most of a draw's time. As PostgreSQL keeps the drawn order in
//!    `queue_draw_positions`, every read of a token's `seq` maps it through the table
//!    (`drawn_seq` in `prelude.lua`, through `derive`: every script that answers a token) once
//!    the draw is recorded; admission moves the cursor over the WAITING list and reads no
//!    `seq`, and an admitted token's derived ACTIVE status goes by its drawn place.
//! 4. `draw_finish.lua` checks the table is whole (its length), appends the tokens issued since
//!    the claim (their `seq`s follow the table's end: they keep them), renames the staging
//!    list over the WAITING list and records the draw, atomically.
//!
//! Another caller meanwhile waits for the record (polling the claim); if the owner's lease runs
//! out (it died) the next claim takes the same draw over and finishes it from where the
//! staging list got (the table's slices go with the staging list's, and the seed's order is
//! the same for every owner). While a draw runs, admission of the line answers `Busy`, and a
//! token shows its stored `seq`: the table is in force only once the draw is recorded, and the
//! domain shows no position until then.
//!
//! [`QueueStore::draw`]: domain::ports::QueueStore::draw

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use domain::ports::StoreError;
use domain::queue::DrawRecord;
use domain::room::{drawn_positions, DrawOutcome};
use time::OffsetDateTime;

use crate::keys::RECORDS_PER_BUCKET;
use crate::{codec, commit_point, RedisQueue};

/// How a draw runs; the defaults suit production.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrawTuning {
    /// Tokens per script (read and write): each script blocks Redis for a few ms per thousand.
    pub chunk: usize,
    /// How long a claim stays the owner's without a chunk written; another instance takes a
    /// draw over once it ran out.
    pub lease: Duration,
    /// A pause between chunks (tests slow a draw down with it).
    pub pause: Duration,
    /// How long a caller waits for another owner's draw before it gives up with a timeout.
    pub wait: Duration,
    /// Tests: stop after writing this many chunks, as if the instance died (the call fails).
    pub stop_after_chunks: Option<usize>,
}

impl Default for DrawTuning {
    fn default() -> Self {
        Self {
            chunk: 5_000,
            lease: Duration::from_secs(10),
            pause: Duration::ZERO,
            wait: Duration::from_secs(60),
            stop_after_chunks: None,
        }
    }
}

/// While reading, the lease is renewed once per this many slices.
const RENEW_EVERY: usize = 50;

/// A claim this call owns: the draw to write.
struct Owned {
    opens_at: i64,
    seed: u64,
    length: usize,
    staged: usize,
    /// How far issue times went back in line order (`iback`); `None` when unknown.
    back: Option<i64>,
    /// The stored `seq` of the first claimed token (the others follow, one apart).
    base: u64,
}

/// What `draw_claim.lua` answered.
enum Claim {
    Recorded { record: DrawRecord, fresh: bool },
    NotDue,
    Held { left: Duration },
    Owned(Owned),
}

/// A unique id for one call's ownership of a draw.
fn owner_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn reply_word(reply: &[Option<String>]) -> &str {
    reply.first().and_then(Option::as_deref).unwrap_or("")
}

fn number<T: std::str::FromStr>(reply: &[Option<String>], i: usize, what: &str) -> Result<T, StoreError> {
    reply
        .get(i)
        .and_then(Option::as_deref)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| codec::corrupt(&format!("draw reply: {what}")))
}

fn record(reply: &[Option<String>]) -> Result<DrawRecord, StoreError> {
    codec::draw(reply, 1)?.ok_or_else(|| codec::corrupt("draw reply without a record"))
}

impl RedisQueue {
    pub(crate) fn run_draw(&self, opens_at: OffsetDateTime, seed: u64) -> Result<DrawOutcome, StoreError> {
        let owner = owner_id();
        let started = Instant::now();
        loop {
            commit_point()?;
            match self.claim(opens_at, seed, &owner)? {
                Claim::Recorded { record, fresh } => return Ok(DrawOutcome::Drawn { record, fresh }),
                Claim::NotDue => return Ok(DrawOutcome::NotDue),
                Claim::Held { left } => {
                    if started.elapsed() >= self.draw.wait {
                        return Err(StoreError::Timeout(
                            "another instance's draw of this line is still running".into(),
                        ));
                    }
                    std::thread::sleep(left.clamp(Duration::from_millis(1), Duration::from_millis(20)));
                }
                Claim::Owned(claim) => {
                    if let Some(outcome) = self.draw_as_owner(&owner, &claim)? {
                        return Ok(outcome);
                    }
                    // Another caller took the draw over (this one was too slow): wait for it.
                }
            }
        }
    }

    fn claim(&self, opens_at: OffsetDateTime, seed: u64, owner: &str) -> Result<Claim, StoreError> {
        let k = &self.keys;
        let now = self.now_arg();
        let reply: Vec<Option<String>> = self.once(&|c| {
            self.scripts
                .draw_claim
                .key(&k.cursor)
                .key(&k.waiting)
                .key(&k.staging)
                .key(&k.drawn)
                .arg(&now)
                .arg(codec::to_micros(opens_at))
                .arg(seed.to_string())
                .arg(owner)
                .arg(crate::micros_std(self.draw.lease))
                .invoke(c)
        })?;
        Ok(match reply_word(&reply) {
            "drawn" => Claim::Recorded { record: record(&reply)?, fresh: false },
            "fresh" => Claim::Recorded { record: record(&reply)?, fresh: true },
            "not_due" => Claim::NotDue,
            "held" => Claim::Held { left: Duration::from_micros(number(&reply, 1, "lease")?) },
            "claimed" => Claim::Owned(Owned {
                opens_at: number(&reply, 2, "opening")?,
                seed: number(&reply, 3, "seed")?,
                length: number(&reply, 4, "length")?,
                staged: number(&reply, 5, "staged")?,
                back: reply.get(6).and_then(Option::as_deref).and_then(|s| s.parse().ok()),
                base: number(&reply, 7, "base")?,
            }),
            _ => return Err(codec::corrupt("draw claim reply")),
        })
    }

    /// Steps 2 to 4 as the owner. `None` when another caller owns the draw now.
    fn draw_as_owner(&self, owner: &str, claim: &Owned) -> Result<Option<DrawOutcome>, StoreError> {
        let &Owned { seed, length, staged, base, .. } = claim;
        let started = Instant::now();
        let Some(slices) = self.read_claimed(owner, claim)? else { return Ok(None) };
        let Drawn { entrants, order, table } = drawn_order(&slices, seed)?;
        let ordered = started.elapsed();
        if order.len() != length || table.len() != 4 * length {
            return Err(codec::corrupt("the WAITING list is shorter than the draw's claim"));
        }
        let k = &self.keys;
        let chunk = self.draw.chunk.max(1);
        let lease = crate::micros_std(self.draw.lease);
        let mut first = staged;
        let mut written = 0;
        while first < length {
            if self.draw.stop_after_chunks.is_some_and(|n| written >= n) {
                return Err(StoreError::Internal(
                    "the draw was stopped half-way (DrawTuning::stop_after_chunks)".into(),
                ));
            }
            if written > 0 && !self.draw.pause.is_zero() {
                std::thread::sleep(self.draw.pause);
            }
            let end = (first + chunk).min(length);
            let seqs = order.get(first..end).ok_or_else(|| codec::corrupt("draw order"))?;
            let slice = table.get(4 * first..4 * end).ok_or_else(|| codec::corrupt("draw table"))?;
            let now = self.now_arg();
            let reply: Vec<Option<String>> = self.once(&|c| {
                self.scripts
                    .draw_chunk
                    .key(&k.cursor)
                    .key(&k.staging)
                    .key(&k.drawn)
                    .arg(&now)
                    .arg(owner)
                    .arg(lease)
                    .arg(first + 1)
                    .arg(slice)
                    .arg(seqs)
                    .invoke(c)
            })?;
            match reply_word(&reply) {
                "ok" => first = number::<usize>(&reply, 1, "staged")?.max(end),
                "drawn" => {
                    let record = self.cursor_draw()?;
                    return Ok(Some(DrawOutcome::Drawn { record, fresh: false }));
                }
                "lost" => return Ok(None),
                _ => return Err(codec::corrupt("draw chunk reply")),
            }
            written += 1;
        }
        tracing::debug!(
            namespace = %k.namespace,
            length,
            base,
            entrants,
            ordered_ms = ordered.as_millis(),
            written_ms = started.elapsed().as_millis(),
            "draw written; finishing"
        );
        let reply: Vec<Option<String>> = self.once(&|c| {
            self.scripts
                .draw_finish
                .key(&k.cursor)
                .key(&k.waiting)
                .key(&k.staging)
                .key(&k.drawn)
                .arg(owner)
                .arg(entrants)
                .invoke(c)
        })?;
        Ok(match reply_word(&reply) {
            "fresh" => Some(DrawOutcome::Drawn { record: record(&reply)?, fresh: true }),
            "drawn" => Some(DrawOutcome::Drawn { record: record(&reply)?, fresh: false }),
            "lost" => None,
            _ => return Err(codec::corrupt("draw finish reply")),
        })
    }

    /// The claimed head of the WAITING list (`length` tokens, stored `seq`s `base..`), a slice
    /// at a time: each slice's values, 32 bytes each, and a flag per value, `1` for an entrant.
    /// Only the slices that meet the window [`RedisQueue::entrant_window`] leaves undecided
    /// have their tokens' issue times compared; the others' flags are known from it.
    ///
    /// The lease is renewed every [`RENEW_EVERY`] slices, so a long read under load does not
    /// let another instance take the draw over; `None` when one did anyway.
    fn read_claimed(&self, owner: &str, claim: &Owned) -> Result<Option<Vec<Slice>>, StoreError> {
        let &Owned { opens_at, length, base, .. } = claim;
        let (lo, hi) = self.entrant_window(claim)?;
        let chunk = self.draw.chunk.max(1);
        let mut slices = Vec::with_capacity(length / chunk + 1);
        let mut start = 0;
        while start < length {
            if slices.len() % RENEW_EVERY == RENEW_EVERY - 1 && !self.renew(owner)? {
                return Ok(None);
            }
            let stop = (start + chunk).min(length) - 1;
            let classify = start < hi && stop >= lo;
            let records = self.claimed_records(base, start, stop)?;
            let mut values = Vec::with_capacity(VALUE_BYTES * records.len());
            let mut flags = String::with_capacity(records.len());
            for (i, (value, issued)) in (start..).zip(records) {
                values.extend_from_slice(&value);
                // Known from the bisection outside the window.
                let entrant = if classify { issued < opens_at } else { i < lo };
                flags.push(if entrant { '1' } else { '0' });
            }
            slices.push((values, flags));
            start = stop + 1;
        }
        Ok(Some(slices))
    }

    /// The records of the claimed tokens at list indices `start..=stop` (stored `seq`s
    /// `base + start ..= base + stop`): each one's value (its random part and `seq`) and issue
    /// time. Read a bucket at a time (`HGETALL`, pipelined), not through a script: the claimed
    /// tokens are stored WAITING and none changes while the draw runs (nothing is admitted
    /// before it, and a sight rewrites only `seen`), so no script needs to hold Redis for it.
    fn claimed_records(&self, base: u64, start: usize, stop: usize) -> Result<Vec<([u8; 32], i64)>, StoreError> {
        let index = |i: usize| u64::try_from(i).map_err(|_| codec::corrupt("a draw index"));
        let (first, last) = (base + index(start)?, base + index(stop)?);
        let per = RECORDS_PER_BUCKET;
        let k = &self.keys;
        let buckets: Vec<HashMap<u64, Vec<u8>>> = self.read(&|c| {
            let mut pipe = redis::pipe();
            for bucket in first / per..=last / per {
                pipe.hgetall(format!("{}{bucket}", k.record_prefix));
            }
            pipe.query(c)
        })?;
        (first..=last)
            .map(|seq| {
                let record = usize::try_from(seq / per - first / per)
                    .ok()
                    .and_then(|b| buckets.get(b))
                    .and_then(|bucket| bucket.get(&(seq % per)))
                    .filter(|r| r.len() >= RECORD_BYTES)
                    .ok_or_else(|| codec::corrupt(&format!("a claimed token of seq {seq} is not stored WAITING")))?;
                Ok((value_of(record, seq)?, issued_of(record)?))
            })
            .collect()
    }

    /// Renews the owner's lease (a chunk of no tokens); `false` when the draw is no longer
    /// this owner's (taken over, or recorded).
    fn renew(&self, owner: &str) -> Result<bool, StoreError> {
        let k = &self.keys;
        let now = self.now_arg();
        let lease = crate::micros_std(self.draw.lease);
        let reply: Vec<Option<String>> = self.once(&|c| {
            self.scripts
                .draw_chunk
                .key(&k.cursor)
                .key(&k.staging)
                .key(&k.drawn)
                .arg(&now)
                .arg(owner)
                .arg(lease)
                .arg(1)
                .arg(&[] as &[u8])
                .invoke(c)
        })?;
        Ok(reply_word(&reply) == "ok")
    }

    /// Bisects the claimed tokens into `[0, lo)`, certainly entrants, `[hi, length)`, certainly
    /// not, and the window between, whose issue times are to be read. With `d` the most an
    /// issue time ever fell behind the latest before it (`iback`, issue.lua): a token issued
    /// before `opens_at - d` has only entrants before it (every earlier time is at most its
    /// own plus `d`), and one issued at or after `opens_at + d` only later tokens behind it
    /// (every later time is at least its own minus `d`). With every issue on one clock `d` is
    /// 0 and the window empty; with `d` unknown (a line from before `iback`) it is everything.
    fn entrant_window(&self, claim: &Owned) -> Result<(usize, usize), StoreError> {
        let &Owned { opens_at, length, back, .. } = claim;
        let Some(d) = back else { return Ok((0, length)) };
        let issued = |i: usize| -> Result<i64, StoreError> {
            let record = self.claimed_records(claim.base, i, i)?;
            record.first().map(|&(_, issued)| issued).ok_or_else(|| codec::corrupt("a draw index"))
        };
        // The last index known an entrant (-1: none), as the first index known not one.
        let (mut yes, mut no) = (0_usize, length);
        while no - yes > 0 {
            let mid = yes + (no - yes) / 2;
            if issued(mid)? < opens_at.saturating_sub(d) {
                yes = mid + 1;
            } else {
                no = mid;
            }
        }
        let lo = yes;
        let (mut before, mut after) = (lo, length);
        while after > before {
            let mid = before + (after - before) / 2;
            if issued(mid)? >= opens_at.saturating_add(d) {
                after = mid;
            } else {
                before = mid + 1;
            }
        }
        Ok((lo, after))
    }

    fn cursor_draw(&self) -> Result<DrawRecord, StoreError> {
        use domain::ports::QueueStore as _;
        self.cursor()?.draw.ok_or_else(|| codec::corrupt("a draw reported recorded is not"))
    }
}

/// A slice of the claimed tokens as read: their values ([`VALUE_BYTES`] each, one after the
/// other) and a flag per token, `1` for an entrant.
type Slice = (Vec<u8>, String);

/// A token's value: its 24 random bytes and its `seq` (8 bytes, big-endian), the 32 bytes its
/// hex spells.
const VALUE_BYTES: usize = 32;

/// A WAITING record's bytes up to its issue time: random part (24), user (16), issued (8)
/// (`RECORD` in `prelude.lua`).
const RECORD_BYTES: usize = 48;

/// The value of the token of `record` (a WAITING record) and `seq`.
fn value_of(record: &[u8], seq: u64) -> Result<[u8; 32], StoreError> {
    let mut value = [0_u8; VALUE_BYTES];
    value[..24].copy_from_slice(record.get(..24).ok_or_else(|| codec::corrupt("a record"))?);
    value[24..].copy_from_slice(&seq.to_be_bytes());
    Ok(value)
}

/// The issue time (µs) of a WAITING record.
fn issued_of(record: &[u8]) -> Result<i64, StoreError> {
    let bytes: [u8; 8] =
        record.get(40..48).and_then(|b| b.try_into().ok()).ok_or_else(|| codec::corrupt("a record"))?;
    i64::try_from(u64::from_be_bytes(bytes)).map_err(|_| codec::corrupt("an issue time"))
}

/// Step 2's result: the claimed tokens in their drawn order, and the position table's bytes
/// for them.
struct Drawn {
    /// `P`, how many of them are entrants.
    entrants: usize,
    /// Their stored `seq`s, entrant `i` in the order of values at `drawn_positions(seed, P)[i]`,
    /// the others behind in their `seq` order.
    order: Vec<String>,
    /// 4 bytes big-endian per claimed token in list order (stored `seq` `base + i` at `4 * i`):
    /// its drawn `seq`, its 1-based place in `order`.
    table: Vec<u8>,
}

/// Step 2: the claimed tokens (slices of the WAITING list as read) drawn.
fn drawn_order(slices: &[Slice], seed: u64) -> Result<Drawn, StoreError> {
    // (value, index in the list): the index is the token's stored `seq` less `base`.
    let (mut entrants, mut later) = (Vec::new(), Vec::new());
    let mut index = 0_usize;
    for (values, flags) in slices {
        let mut values = values.chunks_exact(VALUE_BYTES);
        for flag in flags.bytes() {
            let value = values.next().ok_or_else(|| codec::corrupt("a draw slice without its values"))?;
            if flag == b'1' {
                entrants.push((value, index));
            } else {
                later.push((value, index));
            }
            index += 1;
        }
    }
    // The entrants in the order of their values, byte-wise (`QueueStore::draw`; the bytes'
    // order is their hex digits' order): an order the draw does not change, so the stored
    // line can be checked against the record later.
    entrants.sort_unstable_by_key(|&(value, _)| value);
    let count = entrants.len();
    let positions = drawn_positions(seed, u64::try_from(count).unwrap_or(u64::MAX));
    let mut order: Vec<(&[u8], usize)> = vec![(&[], 0); count];
    for (entrant, position) in entrants.into_iter().zip(positions) {
        let slot = usize::try_from(position)
            .ok()
            .and_then(|p| p.checked_sub(1))
            .and_then(|i| order.get_mut(i))
            .ok_or_else(|| codec::corrupt("a drawn position out of range"))?;
        *slot = entrant;
    }
    order.extend(later);
    let mut table = vec![0_u8; 4 * index];
    for (place, &(_, i)) in order.iter().enumerate() {
        let drawn = u32::try_from(place + 1).map_err(|_| codec::corrupt("a line too long for the position table"))?;
        table
            .get_mut(4 * i..4 * i + 4)
            .ok_or_else(|| codec::corrupt("a token index out of range"))?
            .copy_from_slice(&drawn.to_be_bytes());
    }
    let order = order
        .into_iter()
        .map(|(value, _)| {
            let seq: [u8; 8] =
                value.get(24..).and_then(|b| b.try_into().ok()).ok_or_else(|| codec::corrupt("a value"))?;
            Ok(u64::from_be_bytes(seq).to_string())
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Drawn { entrants: count, order, table })
}
