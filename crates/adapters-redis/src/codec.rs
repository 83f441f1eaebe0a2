//! Between Redis' strings and the domain's values: times as integers of microseconds since the
//! epoch, tokens from the fields of their hash, errors as [`StoreError`].

use std::str::FromStr as _;

use domain::ids::UserId;
use domain::ports::StoreError;
use domain::queue::{DrawRecord, ExpiredReason, QueueCursor, QueueToken, TokenStatus, TokenValue};
use redis::{ErrorKind, RedisError, ServerErrorKind};
use time::OffsetDateTime;

/// Microseconds since the epoch (the domain keeps no finer precision).
pub(crate) fn to_micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .map_err(|_| corrupt(&format!("time {us} µs out of range")))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Internal(format!("unexpected data in Redis: {what}"))
}

/// A script's reply as its bulk strings' bytes: a record's random part and a user id are
/// bytes, which Lua passes through rather than spell (spelling them in Lua cost a script
/// more than its writes).
pub(crate) type Reply = Vec<Option<Vec<u8>>>;

/// Field `i` of a reply (of strings or of bytes), present.
fn bytes<'a, B: AsRef<[u8]>>(fields: &'a [Option<B>], i: usize, name: &str) -> Result<&'a [u8], StoreError> {
    fields.get(i).and_then(Option::as_ref).map(AsRef::as_ref).ok_or_else(|| corrupt(&format!("missing {name}")))
}

/// Field `i` of a reply, present and text.
fn field<'a, B: AsRef<[u8]>>(fields: &'a [Option<B>], i: usize, name: &str) -> Result<&'a str, StoreError> {
    std::str::from_utf8(bytes(fields, i, name)?).map_err(|_| corrupt(&format!("{name} is not text")))
}

pub(crate) fn int<B: AsRef<[u8]>>(fields: &[Option<B>], i: usize, name: &str) -> Result<i64, StoreError> {
    field(fields, i, name)?.parse().map_err(|_| corrupt(&format!("{name} is not an integer")))
}

fn opt_time<B: AsRef<[u8]>>(fields: &[Option<B>], i: usize, name: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    match fields.get(i).and_then(Option::as_ref) {
        None => Ok(None),
        Some(_) => from_micros(int(fields, i, name)?).map(Some),
    }
}

/// How many fields a token takes in a reply (`TOKEN_FIELDS` in `prelude.lua`).
pub(crate) const TOKEN_FIELDS: usize = 7;

/// How many fields the cursor takes in a reply (`CURSOR_FIELDS` in `prelude.lua`).
pub(crate) const CURSOR_FIELDS: usize = 6;

/// A token from the fields `user, seq, status, issued, activated, expires, reason` at
/// `fields[at..]` (the user as its 16 bytes, as records keep it).
pub(crate) fn token<B: AsRef<[u8]>>(
    value: TokenValue,
    fields: &[Option<B>],
    at: usize,
) -> Result<QueueToken, StoreError> {
    let user = uuid::Uuid::from_slice(bytes(fields, at, "user")?).map_err(|_| corrupt("user is not a UUID"))?;
    let status = TokenStatus::from_str(field(fields, at + 2, "status")?).map_err(|_| corrupt("unknown status"))?;
    Ok(QueueToken {
        value,
        user_id: UserId::from_uuid(user),
        seq: int(fields, at + 1, "seq")?,
        status,
        issued_at: from_micros(int(fields, at + 3, "issued")?)?,
        activated_at: opt_time(fields, at + 4, "activated")?,
        expires_at: opt_time(fields, at + 5, "expires")?,
        expired_reason: match fields.get(at + 6).and_then(Option::as_ref) {
            None => None,
            Some(_) => Some(
                ExpiredReason::from_str(field(fields, at + 6, "reason")?)
                    .map_err(|_| corrupt("unknown expired reason"))?,
            ),
        },
    })
}

/// What one issue of a call asked: `user`'s token in the line of `room`, of random part
/// `random` (24 bytes), at `issued_us` (µs).
pub(crate) struct Asked<'a> {
    pub(crate) room: &'a domain::room::RoomId,
    pub(crate) user: UserId,
    pub(crate) random: &'a [u8],
    pub(crate) issued_us: i64,
}

/// The outcomes of an `issue` call (see `issue.lua`), one per issue of `asked`, in its order:
/// the call's cursor first, then each issue's reply. An issue's error is its own; a reply of
/// another shape fails the whole call.
pub(crate) fn issue_outcomes(
    replies: &[Reply],
    asked: &[Asked<'_>],
) -> Result<Vec<Result<domain::ports::IssueOutcome, StoreError>>, StoreError> {
    let Some((cursor_fields, issues)) = replies.split_first().filter(|(_, issues)| issues.len() == asked.len()) else {
        return Err(corrupt("an issue call answered another count of issues"));
    };
    let cursor = cursor(cursor_fields, 0)?;
    Ok(issues.iter().zip(asked).map(|(reply, asked)| issue_outcome(reply, cursor, asked)).collect())
}

/// The outcome of one issue of an `issue` call from its reply: a new token (`1`, its arrival
/// `seq` and its `seq` as shown; the rest is what the issue asked), the user's token found
/// (`0`, its random part and arrival `seq`, which make its value, then its fields), or the
/// error the script met for that issue alone (`E` and its message: `Internal`, a record it
/// could not read); with the call's `cursor`.
fn issue_outcome(
    reply: &[Option<Vec<u8>>],
    cursor: QueueCursor,
    asked: &Asked<'_>,
) -> Result<domain::ports::IssueOutcome, StoreError> {
    let arrival = |at: usize| u64::try_from(int(reply, at, "arrival seq")?).map_err(|_| corrupt("a negative seq"));
    let value = |random: &[u8], arrival: u64| {
        crate::keys::token_value(asked.room, random, arrival).ok_or_else(|| corrupt("token value"))
    };
    let (token, created) = match field(reply, 0, "created")? {
        "1" => {
            let token = QueueToken {
                value: value(asked.random, arrival(1)?)?,
                user_id: asked.user,
                seq: int(reply, 2, "seq")?,
                status: TokenStatus::Waiting,
                issued_at: from_micros(asked.issued_us)?,
                activated_at: None,
                expires_at: None,
                expired_reason: None,
            };
            (token, true)
        }
        "0" => (token(value(bytes(reply, 1, "random part")?, arrival(2)?)?, reply, 3)?, false),
        "E" => return Err(StoreError::Internal(format!("Redis: {}", field(reply, 1, "error")?))),
        _ => return Err(corrupt("issue reply")),
    };
    Ok(domain::ports::IssueOutcome { token, created, cursor })
}

/// The cursor from the fields `admitted, last, epoch, draw_at, draw_entrants, draw_seed` at
/// `fields[at..]` (the first two absent before the first admission, the epoch before the first
/// issue: epoch 0, no line; the draw's until it is recorded).
pub(crate) fn cursor<B: AsRef<[u8]>>(fields: &[Option<B>], at: usize) -> Result<QueueCursor, StoreError> {
    let admitted_through = match fields.get(at).and_then(Option::as_ref) {
        None => 0,
        Some(_) => int(fields, at, "admitted")?,
    };
    let epoch = match fields.get(at + 2).and_then(Option::as_ref) {
        None => 0,
        Some(_) => u64::try_from(int(fields, at + 2, "epoch")?).map_err(|_| corrupt("a negative epoch"))?,
    };
    Ok(QueueCursor {
        admitted_through,
        last_admission_at: opt_time(fields, at + 1, "last")?,
        epoch,
        draw: draw(fields, at + 3)?,
    })
}

/// The draw's record from the fields `draw_at, draw_entrants, draw_seed` at `fields[at..]`.
pub(crate) fn draw<B: AsRef<[u8]>>(fields: &[Option<B>], at: usize) -> Result<Option<DrawRecord>, StoreError> {
    let Some(when) = opt_time(fields, at, "draw_at")? else { return Ok(None) };
    let unsigned = |i: usize, name: &str| -> Result<u64, StoreError> {
        field(fields, at + i, name)?.parse().map_err(|_| corrupt(&format!("{name} is not an unsigned integer")))
    };
    Ok(Some(DrawRecord { at: when, entrants: unsigned(1, "draw_entrants")?, seed: unsigned(2, "draw_seed")? }))
}

/// Whether the connection that returned `e` can no longer be trusted: the server is gone,
/// timed out (a late reply could be taken for the next call's), or sent what does not parse.
pub(crate) fn connection_lost(e: &RedisError) -> bool {
    // A cluster connection with no socket left, or whose slot map could not be read anew.
    e.is_io_error() || matches!(e.kind(), ErrorKind::Parse | ErrorKind::ClusterConnectionNotFound | ErrorKind::Client)
}

/// Whether a cluster connection's slot map is stale: the slot has another master (`MOVED`),
/// is being migrated (`ASK`), or its master was demoted (`READONLY`). Such a connection is
/// retired, so the next one reads the map anew.
pub(crate) fn stale_route(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::ReadOnly))
}

/// `MOVED`: the command did not run (it may be sent again).
pub(crate) fn moved(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::Moved)
}

/// A Redis failure as the port's [`StoreError`]: unreachable, timed out or not serving (loading
/// a dump, a replica, a script running too long) is `Unavailable`, so the caller answers 503;
/// anything else (a script error, a wrong type) is `Internal`.
pub(crate) fn store_error(e: &RedisError) -> StoreError {
    let unavailable = connection_lost(e)
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            )
        )
        || e.code() == Some("BUSY");
    if unavailable {
        StoreError::Unavailable(format!("Redis: {e}"))
    } else {
        StoreError::Internal(format!("Redis: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_at_microsecond_precision() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_893_456_000_123_456_000).unwrap();
        assert_eq!(to_micros(t), 1_893_456_000_123_456);
        assert_eq!(from_micros(to_micros(t)).unwrap(), t);
        // Within 2^53, so Lua's doubles hold it exactly.
        assert!(to_micros(t) < 1_i64 << 53);
    }

    #[test]
    fn a_token_decodes_from_its_hash_fields() {
        let value = TokenValue::from_bytes([1; 32]);
        let f = |s: &str| Some(s.as_bytes().to_vec());
        let fields = [
            Some(uuid::Uuid::parse_str("9b2f0f54-7d55-4ef7-9d0c-2b1a4fb1f1c1").unwrap().as_bytes().to_vec()),
            f("7"),
            f("ACTIVE"),
            f("1893456000000000"),
            f("1893456060000000"),
            f("1893456660000000"),
        ];
        let t = token(value.clone(), &fields, 0).unwrap();
        assert_eq!((t.seq, t.status), (7, TokenStatus::Active));
        assert_eq!(t.expires_at.map(to_micros), Some(1_893_456_660_000_000));
        let waiting = [fields[0].clone(), f("8"), f("WAITING"), f("1893456000000001"), None, None];
        let w = token(value.clone(), &waiting, 0).unwrap();
        assert_eq!((w.activated_at, w.expires_at), (None, None));
        let bad = [fields[0].clone(), f("8"), f("LOST"), f("1"), None, None];
        assert!(matches!(token(value.clone(), &bad, 0), Err(StoreError::Internal(_))));
        let mut paid = fields.to_vec();
        paid[2] = f("EXPIRED");
        paid.push(f("PAID"));
        assert_eq!(token(value.clone(), &paid, 0).unwrap().expired_reason, Some(ExpiredReason::Paid));
        paid[6] = f("GONE");
        assert!(matches!(token(value, &paid, 0), Err(StoreError::Internal(_))));
    }

    #[test]
    fn the_draw_is_decoded_with_the_cursor_and_its_seed_keeps_all_64_bits() {
        let f = |s: &str| Some(s.to_owned());
        let fields = [f("0"), None, f("5"), f("1893456000000000"), f("1000000"), f("18446744073709551615")];
        let c = cursor(&fields, 0).unwrap();
        let draw = c.draw.unwrap();
        assert_eq!((draw.entrants, draw.seed, to_micros(draw.at)), (1_000_000, u64::MAX, 1_893_456_000_000_000));
        assert_eq!(cursor(&fields[..3], 0).unwrap().draw, None);
    }

    #[test]
    fn a_missing_cursor_is_the_start_of_the_line() {
        assert_eq!(cursor::<String>(&[None, None], 0).unwrap(), QueueCursor::default());
    }

    #[test]
    fn unreachable_is_unavailable_and_a_script_error_is_internal() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(store_error(&io), StoreError::Unavailable(_)));
        assert!(connection_lost(&io));
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::WouldBlock));
        assert!(matches!(store_error(&timeout), StoreError::Unavailable(_)));
        let other = RedisError::from((ErrorKind::UnexpectedReturnType, "bad reply"));
        assert!(matches!(store_error(&other), StoreError::Internal(_)));
        assert!(!connection_lost(&other));
    }

    #[test]
    fn a_moved_slot_is_a_stale_route_to_retry_and_a_failover_answers_unavailable() {
        let slot_moved =
            RedisError::from((ErrorKind::Server(ServerErrorKind::Moved), "MOVED", "3999 127.0.0.1:7001".into()));
        assert!(moved(&slot_moved) && stale_route(&slot_moved));
        assert!(matches!(store_error(&slot_moved), StoreError::Unavailable(_)));
        let read_only = RedisError::from((ErrorKind::Server(ServerErrorKind::ReadOnly), "READONLY"));
        assert!(stale_route(&read_only) && !moved(&read_only));
        let down = RedisError::from((ErrorKind::Server(ServerErrorKind::ClusterDown), "CLUSTERDOWN"));
        assert!(matches!(store_error(&down), StoreError::Unavailable(_)));
        assert!(!stale_route(&down));
        let gone = RedisError::from((ErrorKind::ClusterConnectionNotFound, "no connections"));
        assert!(connection_lost(&gone));
        assert!(matches!(store_error(&gone), StoreError::Unavailable(_)));
    }
}
