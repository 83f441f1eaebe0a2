//! Token issue by group commit: concurrent issues of one instance are numbered and stored by
//! one transaction.
//!
//! A token's `seq` must be gapless and in commit order over every instance (a token becomes
//! visible only after every lower `seq`), which needs one serialisation point. Taking it once
//! per arrival (the counter row of the first schema) capped issue at one commit per lock hold
//! and rewrote that row once per arrival. Here a dedicated batcher thread per store takes the
//! requests waiting for it, up to `issue_batch_max`, and runs one transaction for all of them:
//!
//! 1. `BEGIN; SELECT pg_advisory_xact_lock(issue)`: one lock per batch, held to commit, so
//!    batches of all instances commit one after another in `seq` order.
//! 2. One statement, with a snapshot taken after the lock: marks EXPIRED the batch's users'
//!    tokens that are no longer live (as they read: an ACTIVE token's state may be derived from
//!    its admission's range, see `queue`), and reads their live tokens (returned as they read)
//!    and the queue cursor.
//! 3. One statement inserts a WAITING token for each user left, numbered
//!    `max(seq) + ordinality` (`max` read off the primary key index), and returns them.
//! 4. COMMIT, unless the call budget of the batch's oldest request has run out (then every
//!    request of the batch gets `Timeout` and nothing is stored).
//!
//! Users are deduplicated inside a batch (one token per user; the other requests of that user
//! get it with `created: false`). No request waits for company: the thread takes whatever is
//! queued the moment it is free, so a lone request is handled at once, and requests queue only
//! while a batch is in flight. A failed batch fails each of its requests with the same error
//! and stores nothing; a request whose budget ran out while it queued is answered `Timeout`
//! without running. Nothing is rewritten per arrival: each token is one inserted row.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::{Array, Text, Timestamptz, Uuid as SqlUuid};
use domain::ids::UserId;
use domain::ports::{IssueOutcome, StoreError};
use domain::queue::{QueueCursor, QueueToken, TokenValue};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::Fail;
use crate::pool::PgPool;
use crate::queue::{self, cursor_columns, CursorRow, Line, TokenRow};
use crate::sql::prepared;
use crate::work::{self, Limits};

/// The batch users' tokens of line `$3` stored WAITING or ACTIVE, read once (`mine`) as every
/// read of a token reads them (the columns and tables given: `queue::main_token_columns` and
/// `queue::main_token_from`, or the rooms' `queue::room_token_*`): a token's place is its
/// drawn position when it has one (see `order`), and a token stored WAITING that the cursor
/// passed reads as the range of its tick makes it ([`queue::admitted_join`]: ACTIVE, or
/// EXPIRED when it was skipped), read in the same snapshot as the cursor. Of these, the ones
/// that are no longer live are written as they read: EXPIRED, with the reason they read (TTL
/// for an ACTIVE token past its time, at the request's own `now`, restating
/// `QueueToken::is_live_at`; ABANDONED for a skipped one) and their `activated_at` and
/// `expires_at`. That frees the user's place in the one-live-token-per-user-per-line index for
/// the new token of this batch (one write per re-joining buyer, rather than one per token at
/// the tick). The live ones are returned: those that read WAITING, or ACTIVE with
/// `expires_at > now`. The write checks the stored status it read again (`t.status =
/// m.stored`): nothing else writes these rows under the issue lock but the expiry sweep and
/// payments, and a row one of them changed first is left as they wrote it. One row per live
/// token, or one row with NULL token columns when no user has one.
macro_rules! issue_live {
    ($columns:expr, $from:expr) => {
        concat!(
            "WITH req AS (SELECT r.user_id, r.now FROM unnest($1::uuid[], $2::timestamptz[]) AS r (user_id, now)), \
             mine AS MATERIALIZED (SELECT t.seq AS arrival, t.status AS stored, req.now, ",
            $columns,
            " FROM ",
            $from,
            " JOIN req ON t.user_id = req.user_id WHERE t.room = $3 AND t.status IN ('WAITING', 'ACTIVE')), \
             lapsed AS (UPDATE queue_tokens t SET status = 'EXPIRED', activated_at = m.activated_at, \
                 expires_at = m.expires_at, expired_reason = COALESCE(m.expired_reason, 'TTL') FROM mine m \
               WHERE t.room = $3 AND t.seq = m.arrival AND t.status = m.stored \
                 AND (m.status = 'EXPIRED' OR (m.status = 'ACTIVE' AND m.expires_at <= m.now)) \
               RETURNING t.seq) \
             SELECT ",
            cursor_columns!(),
            ", (SELECT count(*) FROM lapsed) AS lapsed, \
               live.seq, live.token, live.user_id, live.status, live.issued_at, live.activated_at, live.expires_at, \
               live.expired_reason \
             FROM queue_admission a LEFT JOIN ( \
               SELECT m.seq, m.token, m.user_id, m.status, m.issued_at, m.activated_at, m.expires_at, m.expired_reason \
               FROM mine m WHERE m.status = 'WAITING' OR (m.status = 'ACTIVE' AND m.expires_at > m.now)) live \
             ON TRUE WHERE a.room = $3"
        )
    };
}

/// [`issue_live`] in `main`'s line.
pub(crate) const ISSUE_LIVE: &str = issue_live!(queue::main_token_columns!(), queue::main_token_from!());

/// [`issue_live`] in a room's line, which may be drawn.
pub(crate) const ISSUE_LIVE_ROOM: &str = issue_live!(queue::room_token_columns!(), queue::room_token_from!());

/// A room's line gets its cursor row with its first issue (`main`'s always has one).
pub(crate) const ISSUE_CURSOR_ROW: &str =
    "INSERT INTO queue_admission (room) VALUES ($1) ON CONFLICT (room) DO NOTHING";

/// Inserts the new tokens into line `$4`, numbered after the highest `seq` ever issued in it,
/// in arrival order. Under the line's issue lock no other transaction can insert a live token
/// of it, and step 2 found none for these users, so every row is inserted: there is no `ON
/// CONFLICT` that could skip a row after it was numbered. A writer that bypassed the lock would
/// make this fail (unique violation) and the batch store nothing, rather than leave a gap.
pub(crate) const ISSUE_INSERT: &str = "INSERT INTO queue_tokens (room, seq, token, user_id, status, issued_at) \
     SELECT $4, top.seq + r.ord, r.token, r.user_id, 'WAITING', r.issued_at \
     FROM (SELECT COALESCE(max(seq), 0) AS seq FROM queue_tokens WHERE room = $4) AS top, \
       unnest($1::uuid[], $2::text[], $3::timestamptz[]) WITH ORDINALITY AS r (user_id, token, issued_at, ord) \
     RETURNING seq, token, user_id, status, issued_at, activated_at, expires_at, expired_reason";

#[derive(Debug, QueryableByName)]
struct LiveRow {
    #[diesel(embed)]
    cursor: CursorRow,
    #[diesel(embed)]
    token: Option<TokenRow>,
}

/// One issue waiting for its batch.
struct Request {
    /// The line the token is issued in.
    line: Arc<Line>,
    user: UserId,
    value: TokenValue,
    now: OffsetDateTime,
    arrived: Instant,
    /// The caller's watches (see `domain::call`): the batch's COMMIT is each caller's.
    watches: Vec<domain::call::CommitWatch>,
    reply: mpsc::SyncSender<Result<IssueOutcome, StoreError>>,
}

/// The batcher of one store (shared by its clones): started by the first issue, stopped by
/// [`Issuer::stop`] or when the last clone is dropped (its channel closes).
#[derive(Default)]
pub(crate) struct Issuer {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    stopped: bool,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").finish_non_exhaustive()
    }
}

impl Issuer {
    /// Issues through the batcher, starting it on first use, and waits for the batch's answer.
    /// The wait is bounded by the batch's own bounds (checkout, statements, the budget checked
    /// before COMMIT); it never gives up by itself, so an answer of failure always means
    /// nothing was stored.
    pub(crate) fn issue(
        &self,
        pool: &PgPool,
        limits: Limits,
        line: Arc<Line>,
        user: UserId,
        value: TokenValue,
        now: OffsetDateTime,
    ) -> Result<IssueOutcome, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut request =
            Request { line, user, value, now, arrived: Instant::now(), watches: domain::call::current(), reply };
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.stopped {
                return Err(StoreError::Unavailable("the store is closed".into()));
            }
            // Started on first use, and again if its thread ever died (its receiver is gone,
            // so a send fails and hands the request back).
            for _ in 0..2 {
                if state.sender.is_none() {
                    let (sender, requests) = mpsc::channel();
                    let pool = pool.clone();
                    let thread = std::thread::Builder::new()
                        .name("pg-issue-batcher".into())
                        .spawn(move || run(&pool, limits, &requests))
                        .map_err(|e| StoreError::Internal(format!("cannot start the issue batcher: {e}")))?;
                    state.sender = Some(sender);
                    state.thread = Some(thread);
                }
                match state.sender.as_ref().map(|s| s.send(request)) {
                    Some(Ok(())) => break,
                    Some(Err(mpsc::SendError(back))) => {
                        state.sender = None;
                        request = back;
                    }
                    None => return Err(StoreError::Internal("the issue batcher has no channel".into())),
                }
            }
            if state.sender.is_none() {
                return Err(StoreError::Internal("the issue batcher cannot be started".into()));
            }
        }
        answer.recv().unwrap_or_else(|_| Err(StoreError::Internal("the issue batcher stopped mid-batch".into())))
    }

    /// Stops the batcher (after the batch in flight) and waits for its thread.
    pub(crate) fn stop(&self) {
        let thread = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.stopped = true;
            state.sender = None;
            state.thread.take()
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The batcher thread: one batch per loop, whatever is queued when it is free.
fn run(pool: &PgPool, limits: Limits, requests: &mpsc::Receiver<Request>) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < limits.issue_batch_max {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        run_batch(pool, limits, batch);
    }
}

/// One batch per line among the requests taken (nearly always one: `main`'s), each line's
/// under its own issue lock, in the order the lines first appear.
fn run_batch(pool: &PgPool, limits: Limits, batch: Vec<Request>) {
    let mut lines: Vec<Vec<Request>> = Vec::with_capacity(1);
    for request in batch {
        match lines.iter_mut().find(|l| l.first().is_some_and(|r| r.line.room == request.line.room)) {
            Some(line) => line.push(request),
            None => lines.push(vec![request]),
        }
    }
    for line in lines {
        run_line_batch(pool, limits, line);
    }
}

fn run_line_batch(pool: &PgPool, limits: Limits, batch: Vec<Request>) {
    let started = Instant::now();
    let (batch, late): (Vec<_>, Vec<_>) = batch.into_iter().partition(|r| started < r.arrived + limits.budget);
    for request in late {
        let _ = request.reply.send(Err(StoreError::Timeout("the issue waited its whole time budget in line".into())));
    }
    // A caller that has already answered "nothing was done" is left out; one that gives up
    // while the batch runs makes the whole batch roll back at its COMMIT (`domain::call`).
    let (batch, gone): (Vec<_>, Vec<_>) =
        batch.into_iter().partition(|r| !r.watches.iter().any(domain::call::CommitWatch::abandoned));
    for request in gone {
        let _ = request.reply.send(Err(StoreError::Timeout("the caller gave up before the issue ran".into())));
    }
    let Some(oldest) = batch.iter().map(|r| r.arrived).min() else { return };
    let Some(line) = batch.first().map(|r| r.line.clone()) else { return };
    // One entry per user, in arrival order: the first request of a user names the token.
    let mut slot_of: HashMap<UserId, usize> = HashMap::new();
    let mut unique: Vec<&Request> = Vec::new();
    for request in &batch {
        slot_of.entry(request.user).or_insert_with(|| {
            unique.push(request);
            unique.len() - 1
        });
    }
    let watches: Vec<_> = batch.iter().flat_map(|r| r.watches.iter().cloned()).collect();
    let result = domain::call::attached(&watches, || store_batch(pool, limits, &line, oldest, &unique));
    let mut answered = vec![false; unique.len()];
    for request in &batch {
        let answer = match (&result, slot_of.get(&request.user)) {
            (Ok((tokens, cursor)), Some(&slot)) => match tokens.get(slot) {
                Some((token, created)) => {
                    // Only the first request of a user can have created its token.
                    let created = *created && !answered[slot];
                    answered[slot] = true;
                    Ok(IssueOutcome { token: token.clone(), created, cursor: *cursor })
                }
                None => Err(StoreError::Internal("the issue batch lost a request".into())),
            },
            (Ok(_), None) => Err(StoreError::Internal("the issue batch lost a request".into())),
            (Err(e), _) => Err(e.clone()),
        };
        // A caller that went away no longer needs the answer.
        let _ = request.reply.send(answer);
    }
}

/// Stores one batch; returns, per unique user, their token and whether it is new.
fn store_batch(
    pool: &PgPool,
    limits: Limits,
    line: &Line,
    oldest: Instant,
    unique: &[&Request],
) -> Result<(Vec<(QueueToken, bool)>, QueueCursor), StoreError> {
    let mut conn = pool.get().map_err(|e| crate::error::from_pool(&e))?;
    let users: Vec<Uuid> = unique.iter().map(|r| r.user.as_uuid()).collect();
    let nows: Vec<OffsetDateTime> = unique.iter().map(|r| r.now).collect();
    let room = line.name();
    let outcome = work::transaction(&mut conn, &line.issue_begin, oldest + limits.budget, limits.waits, |tx| {
        if !line.room.is_main() {
            prepared(ISSUE_CURSOR_ROW).bind::<Text, _>(room).execute(tx.conn()?)?;
        }
        let live = if line.room.is_main() { ISSUE_LIVE } else { ISSUE_LIVE_ROOM };
        let rows: Vec<LiveRow> = prepared(live)
            .bind::<Array<SqlUuid>, _>(&users)
            .bind::<Array<Timestamptz>, _>(&nows)
            .bind::<Text, _>(room)
            .load(tx.conn()?)?;
        let mut cursor: Option<QueueCursor> = None;
        let mut tokens: HashMap<Uuid, (QueueToken, bool)> = HashMap::with_capacity(unique.len());
        for row in rows {
            if cursor.is_none() {
                cursor = Some(row.cursor.into_domain());
            }
            if let Some(token) = row.token {
                let token = token.into_domain()?;
                tokens.insert(token.user_id.as_uuid(), (token, false));
            }
        }
        let fresh: Vec<&&Request> = unique.iter().filter(|r| !tokens.contains_key(&r.user.as_uuid())).collect();
        if !fresh.is_empty() {
            let users: Vec<Uuid> = fresh.iter().map(|r| r.user.as_uuid()).collect();
            let values: Vec<&str> = fresh.iter().map(|r| r.value.as_str()).collect();
            let nows: Vec<OffsetDateTime> = fresh.iter().map(|r| r.now).collect();
            let inserted: Vec<TokenRow> = prepared(ISSUE_INSERT)
                .bind::<Array<SqlUuid>, _>(&users)
                .bind::<Array<Text>, _>(&values)
                .bind::<Array<Timestamptz>, _>(&nows)
                .bind::<Text, _>(room)
                .load(tx.conn()?)?;
            for row in inserted {
                let token = row.into_domain()?;
                tokens.insert(token.user_id.as_uuid(), (token, true));
            }
        }
        let per_user = unique
            .iter()
            .map(|r| tokens.remove(&r.user.as_uuid()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| StoreError::Internal("a user of the batch got no token".into()))?;
        let cursor = cursor.ok_or_else(|| StoreError::Internal("the queue cursor row is missing".into()))?;
        Ok::<_, Fail<()>>((per_user, cursor))
    })?;
    outcome.map_err(|()| StoreError::Internal("the issue batch refused itself".into()))
}
