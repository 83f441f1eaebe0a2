//! Rooms: a line per room ([`domain::ports::QueueLines`]), the draw of a pre-queue
//! (`QueueStore::draw`), presence and abandoned places (`QueueStore::note_seen` and `admit`
//! with `abandon_after`), the gate an ACTIVE token's room puts on concerts, the rooms
//! themselves ([`domain::ports::RoomStore`]) and why a token expired. Every case goes through
//! the use cases, so the domain's rules and the store's atomic sections are pinned together.

use std::collections::{BTreeSet, HashSet};

use domain::audit::AuditAction;
use domain::error::{
    CreateRoomError, IssueTokenError, ListSchedulesError, ListSeatsError, PayError, ReadTokenError, ReserveError,
    UpdateRoomError,
};
use domain::ids::ConcertId;
use domain::queue::{AdmissionOutcome, ExpiredReason, QueueToken, SettingsChange, TokenStatus};
use domain::room::{drawn_positions, DrawOutcome, RoomChange, RoomDraft, RoomId, RoomState};
use domain::service::{ActiveUser, RoomView};
use time::Duration;

use crate::concurrency::race;
use crate::fixture::{Fixture, World};
use crate::Harness;

/// The operator every case acts as.
const OPERATOR: &str = "0p3r4t0r";

fn room_id(s: &str) -> RoomId {
    RoomId::parse(s).expect("a slug")
}

/// A draft of room `id` gating `concerts`, admitting `batch` every 60 s.
fn draft(id: &str, concerts: Vec<ConcertId>, batch: i64) -> RoomDraft {
    RoomDraft {
        id: id.to_owned(),
        name: format!("Room {id}"),
        concerts,
        settings: SettingsChange { admit_batch: Some(batch), ..SettingsChange::default() },
        ..RoomDraft::default()
    }
}

fn create(w: &World, draft: &RoomDraft) -> RoomView {
    w.app.create_room(OPERATOR, draft).expect("create_room")
}

/// Issues a token in `room` for a new user.
fn join(w: &World, room: &RoomId) -> QueueToken {
    w.app.issue_token_in(w.user(), room).expect("issue in room").view.token
}

/// Runs room ticks, moving the clock to each next due one, until `token` is ACTIVE.
fn admit_in_room(w: &World, token: &QueueToken) -> ActiveUser {
    for _ in 0..100 {
        if let Ok(who) = w.app.authorize(token.value.as_str()) {
            return who;
        }
        let ticks = w.app.tick_rooms().expect("rooms");
        for tick in ticks {
            if let Ok(AdmissionOutcome::NotDue { wait }) = tick.map(|t| t.admission) {
                w.advance(wait.max(Duration::seconds(1)));
            }
        }
    }
    panic!("token never admitted");
}

/// A room's line is its own: its own numbering, one live token per user per room (a user
/// waits in several rooms at once), its own N, and the token names its room.
pub fn each_room_has_a_line_of_its_own<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let tour = room_id("tour");
    create(&fx, &draft("tour", vec![fx.concert(1).id], 2));
    let user = fx.user();
    let in_main = fx.app.issue_token(user).expect("main");
    let in_tour = fx.app.issue_token_in(user, &tour).expect("tour");
    assert!(in_main.created && in_tour.created, "a user may wait in two rooms at once");
    assert_eq!((in_main.view.token.seq, in_tour.view.token.seq), (1, 1), "each line numbers its own");
    assert_eq!(in_tour.view.token.value.room(), tour);
    assert!(in_tour.view.token.value.as_str().starts_with("tour."));
    assert_eq!(in_main.view.token.value.room(), RoomId::main());
    let again = fx.app.issue_token_in(user, &tour).expect("again");
    assert!(!again.created);
    assert_eq!(again.view.token.value, in_tour.view.token.value, "one live token per user per room");

    let others: Vec<QueueToken> = (0..4).map(|_| join(&fx, &tour)).collect();
    let tick = fx.app.tick_rooms().expect("rooms").pop().expect("one room").expect("tick");
    assert_eq!(tick.admission, AdmissionOutcome::Admitted(2), "the room's own N");
    assert_eq!(fx.app.read_token(in_main.view.token.value.as_str()).expect("main").status, TokenStatus::Waiting);
    assert_eq!(fx.app.read_token(in_tour.view.token.value.as_str()).expect("tour").status, TokenStatus::Active);
    let third = fx.app.read_token(others[1].value.as_str()).expect("read");
    assert_eq!((third.status, third.position), (TokenStatus::Waiting, 1));
    // main's token is unknown to the room's line and the other way round.
    assert_eq!(fx.ports.lines.line(&tour).find(&in_main.view.token.value).expect("find"), None);
    assert_eq!(fx.ports.queue.find(&in_tour.view.token.value).expect("find"), None);
    let view = fx.app.room_view(&tour).expect("view");
    assert_eq!((view.stats.waiting, view.stats.issued_through, view.stats.cursor.admitted_through), (3, 5, 2));
    assert_eq!(fx.app.queue_state().expect("main").stats.waiting, 1, "main's line is untouched");
}

/// An ACTIVE token opens its own room's concerts only: the others answer ROOM_MISMATCH with
/// the room to join, and a payment there changes nothing.
pub fn a_token_opens_only_its_rooms_concerts<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let tour = room_id("tour");
    let (main_concert, tour_concert) = (fx.concert(0).clone(), fx.concert(1).clone());
    create(&fx, &draft("tour", vec![tour_concert.id], 10));
    let main_user = fx.active_user();
    let tour_user = admit_in_room(&fx, &join(&fx, &tour));
    assert_eq!(tour_user.room(), &tour);

    let listed: Vec<ConcertId> = fx.app.concerts(&tour_user).expect("concerts").iter().map(|c| c.id).collect();
    assert_eq!(listed, vec![tour_concert.id]);
    let listed: Vec<ConcertId> = fx.app.concerts(&main_user).expect("concerts").iter().map(|c| c.id).collect();
    assert_eq!(listed, vec![main_concert.id]);

    let (main_schedule, tour_schedule) = (fx.schedule(0).id, fx.schedule(3).id);
    let wrong = fx.app.schedules(&tour_user, main_concert.id);
    assert_eq!(wrong, Err(ListSchedulesError::RoomMismatch { room: RoomId::main() }));
    assert_eq!(
        fx.app.seats(&main_user, tour_schedule).err(),
        Some(ListSeatsError::RoomMismatch { room: tour.clone() })
    );
    let seat = fx.seat(3, 1).id;
    assert_eq!(
        fx.app.reserve(&main_user, tour_schedule, seat).err(),
        Some(ReserveError::RoomMismatch { room: tour.clone() })
    );
    assert!(fx.app.schedules(&tour_user, tour_concert.id).is_ok());
    assert!(fx.app.seats(&main_user, main_schedule).is_ok());

    // A hold made in the tour's room cannot be paid with a token of main, even the same user's.
    let held = fx.app.reserve(&tour_user, tour_schedule, seat).expect("hold in its room");
    fx.charge(tour_user.user_id(), 1_000_000);
    let main_token = fx.app.issue_token(tour_user.user_id()).expect("main token").view.token;
    let main_active = {
        fx.admit_all(std::slice::from_ref(&main_token));
        fx.app.authorize(main_token.value.as_str()).expect("active in main")
    };
    assert_eq!(fx.pay(&main_active, held.id).err(), Some(PayError::RoomMismatch { room: tour.clone() }));
    assert_eq!(fx.stored(held.id).status, domain::reservation::ReservationStatus::Held, "nothing paid");
    assert_eq!(fx.app.read_token(main_token.value.as_str()).expect("read").status, TokenStatus::Active, "not used up");
    // A user reads their reservation with any ACTIVE token of theirs; the tour's token pays.
    assert_eq!(fx.app.reservation(&main_active, held.id).map(|r| r.id), Ok(held.id));
    let paid = fx.pay(&tour_user, held.id).expect("paid in its room");
    assert_eq!(paid.reservation_id, held.id);
    let used = fx.app.read_token(tour_user.token().value.as_str()).expect("read");
    assert_eq!((used.status, used.expired_reason), (TokenStatus::Expired, Some(ExpiredReason::Paid)));
}

/// Joining follows the room's state on the store's clock: SCHEDULED refuses with the
/// openings, PREQUEUE takes joiners with no position, CLOSED refuses; unknown rooms are 404.
pub fn joining_follows_the_rooms_state<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let now = fx.now();
    let (pre, opens) = (now + Duration::seconds(60), now + Duration::seconds(120));
    let room = RoomDraft { opens_at: Some(opens), prequeue_opens_at: Some(pre), ..draft("tour", vec![], 10) };
    let view = create(&fx, &room);
    assert_eq!((view.state, view.estimated_wait_secs), (RoomState::Scheduled, None));
    let tour = room_id("tour");
    assert_eq!(
        fx.app.issue_token_in(fx.user(), &tour).err(),
        Some(IssueTokenError::RoomNotOpen { opens_at: Some(opens), prequeue_opens_at: Some(pre) })
    );
    assert_eq!(fx.app.issue_token_in(fx.user(), &room_id("nowhere")).err(), Some(IssueTokenError::RoomNotFound));
    fx.advance(Duration::seconds(60));
    let joined = fx.app.issue_token_in(fx.user(), &tour).expect("pre-queue");
    assert_eq!((joined.view.draw_at, joined.view.position, joined.view.estimated_wait_secs), (Some(opens), 0, 0));
    assert_eq!(fx.app.room_view(&tour).expect("view").state, RoomState::Prequeue);
    let closed = RoomChange { closed: Some(true), ..RoomChange::default() };
    assert_eq!(fx.app.update_room(OPERATOR, &tour, &closed).expect("close").state, RoomState::Closed);
    assert_eq!(fx.app.issue_token_in(fx.user(), &tour).err(), Some(IssueTokenError::RoomClosed));
    // The token issued before the closing lives on.
    assert_eq!(fx.app.read_token(joined.view.token.value.as_str()).expect("read").status, TokenStatus::Waiting);
    assert_eq!(fx.app.read_token("tour.zz"), Err(ReadTokenError::Invalid));
}

/// At the opening the pre-queue's order is drawn once from a recorded seed: the entrants take
/// positions 1..=P as `drawn_positions` says, later arrivals follow in their order, admission
/// takes the drawn order, and a second draw changes nothing.
pub fn the_prequeue_is_drawn_once_at_the_opening<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let now = fx.now();
    let opens = now + Duration::seconds(60);
    let room = RoomDraft { opens_at: Some(opens), prequeue_opens_at: Some(now), ..draft("tour", vec![], 3) };
    create(&fx, &room);
    let tour = room_id("tour");
    let entrants: Vec<QueueToken> = (0..8).map(|_| join(&fx, &tour)).collect();
    let nothing = fx.app.tick_rooms().expect("rooms").pop().expect("room").expect("tick");
    assert!(matches!(nothing.admission, AdmissionOutcome::NotDue { .. }) && nothing.drew.is_none());
    assert_eq!(fx.ports.lines.line(&tour).draw(opens, 1).expect("early draw"), DrawOutcome::NotDue);

    fx.advance(Duration::seconds(60));
    let late = join(&fx, &tour); // after the opening, before the draw
    assert_eq!(fx.app.read_token(late.value.as_str()).expect("read").draw_at, Some(opens), "no position yet");
    let tick = fx.app.tick_rooms().expect("rooms").pop().expect("room").expect("tick");
    let record = tick.drew.expect("drawn at the first check at the opening");
    assert_eq!((record.entrants, record.at), (8, fx.now()));
    assert_eq!(tick.admission, AdmissionOutcome::Admitted(3), "the first admission right after the draw");

    let order = drawn_positions(record.seed, 8);
    let mut entrants = entrants;
    entrants.sort_by(|a, b| a.value.cmp(&b.value)); // the draw's order of entrants
    for (i, t) in entrants.iter().enumerate() {
        let stored = fx.ports.lines.line(&tour).find(&t.value).expect("find").expect("stored");
        assert_eq!(u64::try_from(stored.seq).ok(), Some(order[i]), "entrant {i} holds its drawn place");
        let view = fx.app.read_token(t.value.as_str()).expect("read");
        let expected = if order[i] <= 3 { TokenStatus::Active } else { TokenStatus::Waiting };
        assert_eq!(view.status, expected, "admitted in drawn order");
        if expected == TokenStatus::Waiting {
            assert_eq!((view.position, view.draw_at), (i64::try_from(order[i]).unwrap_or(0) - 3, None));
        }
    }
    let late = fx.app.read_token(late.value.as_str()).expect("read");
    assert_eq!((late.token.seq, late.position), (9, 6), "later arrivals follow the drawn");
    let again = fx.ports.lines.line(&tour).draw(opens, 99).expect("again");
    assert_eq!(again, DrawOutcome::Drawn { record, fresh: false });
    let view = fx.app.room_view(&tour).expect("view");
    assert_eq!((view.stats.cursor.draw, view.stats.issued_through, view.state), (Some(record), 9, RoomState::Open));
}

/// Buyers who stopped polling are skipped at their turn, do not count against N, and read
/// EXPIRED with reason ABANDONED; polling keeps the place.
pub fn abandoned_places_are_skipped_at_their_turn<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let room = RoomDraft { abandon_after_secs: Some(30), ..draft("tour", vec![], 2) };
    create(&fx, &room);
    let tour = room_id("tour");
    let tokens: Vec<QueueToken> = (0..6).map(|_| join(&fx, &tour)).collect();
    fx.advance(Duration::seconds(20));
    for i in [0, 2, 3] {
        fx.app.read_token(tokens[i].value.as_str()).expect("poll");
    }
    fx.app.flush_presence().expect("presence");
    fx.advance(Duration::seconds(15)); // 35 s after the issue, 15 s after the polls
    let tick = fx.app.tick_rooms().expect("rooms").pop().expect("room").expect("tick");
    assert_eq!(tick.admission, AdmissionOutcome::AdmittedPresent { admitted: 2, abandoned: 1 });
    let status = |i: usize| fx.app.read_token(tokens[i].value.as_str()).expect("read");
    assert_eq!(status(0).status, TokenStatus::Active);
    assert_eq!((status(1).status, status(1).expired_reason), (TokenStatus::Expired, Some(ExpiredReason::Abandoned)));
    assert_eq!(status(2).status, TokenStatus::Active);
    assert_eq!((status(3).status, status(3).position), (TokenStatus::Waiting, 1));
    let view = fx.app.room_view(&tour).expect("view");
    assert_eq!((view.stats.abandoned, view.stats.cursor.admitted_through, view.stats.waiting), (1, 3, 3));
    // The rest: 3 was seen (and is seen again by its poll above), 4 and 5 never were.
    fx.app.flush_presence().expect("presence");
    fx.advance(Duration::seconds(60));
    fx.app.read_token(tokens[3].value.as_str()).expect("poll");
    fx.app.flush_presence().expect("presence");
    let tick = fx.app.tick_rooms().expect("rooms").pop().expect("room").expect("tick");
    assert_eq!(tick.admission, AdmissionOutcome::AdmittedPresent { admitted: 1, abandoned: 2 });
    assert_eq!(fx.app.room_view(&tour).expect("view").stats.abandoned, 3);
    // Without abandonment (main) nobody is skipped, whatever the silence.
    let main_tokens: Vec<QueueToken> = (0..2).map(|_| fx.issue(fx.user())).collect();
    fx.advance(Duration::hours(2));
    assert_eq!(fx.app.admit().expect("admit").admitted(), 2);
    assert!(main_tokens
        .iter()
        .all(|t| fx.app.read_token(t.value.as_str()).is_ok_and(|v| v.status == TokenStatus::Active)));
}

/// A token says why it expired: its TTL, a payment, or its buyer's absence.
pub fn tokens_say_why_they_expired<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let who = fx.active_user();
    let lapsed = fx.active_user();
    fx.charge(who.user_id(), 1_000_000);
    let held = fx.hold(&who, 0, 1);
    fx.pay(&who, held.id).expect("paid");
    let paid = fx.app.read_token(who.token().value.as_str()).expect("read");
    assert_eq!(paid.expired_reason, Some(ExpiredReason::Paid));
    assert_eq!(fx.app.read_token(lapsed.token().value.as_str()).expect("read").expired_reason, None);
    fx.advance(Duration::seconds(600));
    let read = fx.app.read_token(lapsed.token().value.as_str()).expect("read");
    assert_eq!(
        (read.status, read.expired_reason),
        (TokenStatus::Expired, Some(ExpiredReason::Ttl)),
        "before the sweep"
    );
    assert!(fx.app.expire_tokens().expect("sweep") >= 1);
    let swept = fx.ports.queue.find(&lapsed.token().value).expect("find").expect("stored");
    assert_eq!(swept.expired_reason, Some(ExpiredReason::Ttl));
}

/// Rooms are created and changed all or nothing, with their log lines: an id is taken once,
/// a concert is in at most one room, the opening changes only before it, and a concert removed
/// goes back to `main`.
pub fn rooms_are_created_and_changed_with_their_log_lines<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    let (a, b) = (fx.concert(0).id, fx.concert(1).id);
    let opens = fx.now() + Duration::seconds(600);
    let view = create(&fx, &RoomDraft { opens_at: Some(opens), ..draft("tour", vec![b], 5) });
    assert_eq!((view.room.concerts.clone(), view.room.settings.admission.batch), (vec![b], 5));
    assert_eq!(fx.app.create_room(OPERATOR, &draft("tour", vec![], 1)).err(), Some(CreateRoomError::Exists));
    assert_eq!(
        fx.app.create_room(OPERATOR, &draft("other", vec![b], 1)).err(),
        Some(CreateRoomError::ConcertInRoom(b))
    );
    let ghost = ConcertId::from_uuid(uuid::Uuid::from_u128(7));
    assert_eq!(
        fx.app.create_room(OPERATOR, &draft("ghost", vec![ghost], 1)).err(),
        Some(CreateRoomError::UnknownConcert(ghost))
    );
    assert!(fx.ports.rooms.rooms().expect("rooms").iter().all(|r| r.id.as_str() == "tour"), "refusals stored nothing");

    let other = create(&fx, &draft("other", vec![a], 1));
    let tour = room_id("tour");
    let take = RoomChange { concerts: Some(vec![a, b]), ..RoomChange::default() };
    assert_eq!(fx.app.update_room(OPERATOR, &tour, &take).err(), Some(UpdateRoomError::ConcertInRoom(a)));
    let give_back = RoomChange { concerts: Some(vec![]), ..RoomChange::default() };
    assert!(fx.app.update_room(OPERATOR, &other.room.id, &give_back).expect("give back").room.concerts.is_empty());
    assert_eq!(fx.app.update_room(OPERATOR, &tour, &take).expect("take").room.concerts, {
        let mut both = vec![a, b];
        both.sort();
        both
    });
    let later = RoomChange { opens_at: Some(Some(opens + Duration::seconds(60))), ..RoomChange::default() };
    assert_eq!(
        fx.app.update_room(OPERATOR, &tour, &later).expect("move").room.opens_at,
        Some(opens + Duration::seconds(60))
    );
    fx.advance(Duration::seconds(700));
    assert_eq!(fx.app.update_room(OPERATOR, &tour, &later).err(), Some(UpdateRoomError::AlreadyOpen));
    assert_eq!(fx.app.update_room(OPERATOR, &room_id("nowhere"), &give_back).err(), Some(UpdateRoomError::NotFound));
    let pause = RoomChange {
        settings: SettingsChange { paused: Some(true), ..SettingsChange::default() },
        ..RoomChange::default()
    };
    assert_eq!(fx.app.update_room(OPERATOR, &tour, &pause).expect("pause").state, RoomState::Paused);
    let tick = fx.app.tick_rooms().expect("rooms").into_iter().find_map(|t| t.ok().filter(|t| t.room == tour));
    assert_eq!(tick.map(|t| t.admission), Some(AdmissionOutcome::Paused));

    let log = fx.app.audit_log(None, Some(100)).expect("log").entries;
    let rooms: Vec<(AuditAction, String)> = log
        .iter()
        .rev()
        .filter(|e| matches!(e.action.action, AuditAction::RoomCreate | AuditAction::RoomUpdate))
        .map(|e| (e.action.action, e.action.target.clone()))
        .collect();
    let expect = [
        (AuditAction::RoomCreate, "tour"),
        (AuditAction::RoomCreate, "other"),
        (AuditAction::RoomUpdate, "other"),
        (AuditAction::RoomUpdate, "tour"),
        (AuditAction::RoomUpdate, "tour"),
        (AuditAction::RoomUpdate, "tour"),
    ];
    assert_eq!(rooms, expect.map(|(a, t)| (a, t.to_owned())).to_vec(), "one line per change, none per refusal");
    let paused = log.first().expect("a line");
    assert!(paused.action.before.as_deref().is_some_and(|b| b.contains("paused=false")));
    assert!(paused.action.after.contains("paused=true"));
}

/// Concurrent creations of rooms claiming one concert: exactly one takes it.
pub fn concurrent_room_creations_never_share_a_concert<H: Harness>() {
    const THREADS: usize = 8;
    let fx = Fixture::<H>::seeded();
    let concert = fx.concert(1).id;
    let w = &fx.world;
    let results = race(THREADS, |i| w.app.create_room(OPERATOR, &draft(&format!("room-{i}"), vec![concert], 1)));
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| r.is_ok() || *r == Err(CreateRoomError::ConcertInRoom(concert))));
    let holders: Vec<_> =
        fx.ports.rooms.rooms().expect("rooms").into_iter().filter(|r| r.concerts.contains(&concert)).collect();
    assert_eq!(holders.len(), 1);
}

/// Concurrent draws of one line (several instances reaching the opening together) draw once:
/// one fresh record, the same for all, and the line a permutation.
pub fn concurrent_draws_draw_once<H: Harness>() {
    const THREADS: usize = 8;
    let fx = Fixture::<H>::seeded();
    let now = fx.now();
    let opens = now + Duration::seconds(10);
    create(&fx, &RoomDraft { opens_at: Some(opens), prequeue_opens_at: Some(now), ..draft("tour", vec![], 5) });
    let tour = room_id("tour");
    let entrants: Vec<QueueToken> = (0..50).map(|_| join(&fx, &tour)).collect();
    fx.advance(Duration::seconds(10));
    let w = &fx.world;
    let results =
        race(THREADS, |i| w.ports.lines.line(&tour).draw(opens, u64::try_from(i).unwrap_or(0) + 1).expect("draw"));
    let fresh: Vec<_> = results.iter().filter(|r| matches!(r, DrawOutcome::Drawn { fresh: true, .. })).collect();
    assert_eq!(fresh.len(), 1, "{results:?}");
    let records: HashSet<_> = results
        .iter()
        .map(|r| match r {
            DrawOutcome::Drawn { record, .. } => Some(*record),
            DrawOutcome::NotDue => None,
        })
        .collect();
    assert_eq!(records.len(), 1, "every caller sees the one draw");
    let record = records.into_iter().next().flatten().expect("a record");
    let order = drawn_positions(record.seed, 50);
    let mut entrants = entrants;
    entrants.sort_by(|a, b| a.value.cmp(&b.value)); // the draw's order of entrants
    let seqs: BTreeSet<i64> = entrants
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let seq = w.ports.lines.line(&tour).find(&t.value).expect("find").expect("stored").seq;
            assert_eq!(u64::try_from(seq).ok(), Some(order[i]));
            seq
        })
        .collect();
    assert_eq!(seqs, (1..=50).collect());
}

/// A draw while buyers keep joining: every token issued is kept, the line stays gapless, the
/// entrants hold 1..=P and the rest follow in arrival order.
pub fn joins_during_a_draw_are_kept_behind_the_drawn<H: Harness>() {
    const JOINERS: usize = 8;
    let fx = Fixture::<H>::seeded();
    let now = fx.now();
    let opens = now + Duration::seconds(10);
    create(&fx, &RoomDraft { opens_at: Some(opens), prequeue_opens_at: Some(now), ..draft("tour", vec![], 5) });
    let tour = room_id("tour");
    let entrants: Vec<QueueToken> = (0..200).map(|_| join(&fx, &tour)).collect();
    fx.advance(Duration::seconds(10));
    let w = &fx.world;
    let results = race(JOINERS + 1, |i| {
        if i == 0 {
            w.ports.lines.line(&tour).draw(opens, 7).expect("draw");
            Vec::new()
        } else {
            (0..10).map(|_| join(w, &tour)).collect::<Vec<_>>()
        }
    });
    let later: Vec<QueueToken> = results.into_iter().flatten().collect();
    let line = w.ports.lines.line(&tour);
    let mut seqs: Vec<i64> =
        entrants.iter().chain(&later).map(|t| line.find(&t.value).expect("find").expect("stored").seq).collect();
    let entrant_seqs: BTreeSet<i64> = seqs.iter().take(entrants.len()).copied().collect();
    assert_eq!(entrant_seqs, (1..=200).collect(), "the entrants hold 1..=P");
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=i64::try_from(200 + JOINERS * 10).unwrap_or(0)).collect::<Vec<_>>(), "gapless, none lost");
}

/// Several rooms admit on their own: each at most its own N per interval, none waiting for
/// another, a paused room pausing nobody else.
pub fn rooms_admit_independently<H: Harness>() {
    let fx = Fixture::<H>::seeded();
    for (id, batch) in [("a", 1), ("b", 2), ("c", 3)] {
        create(&fx, &draft(id, vec![], batch));
        for _ in 0..10 {
            join(&fx, &room_id(id));
        }
    }
    let pause = RoomChange {
        settings: SettingsChange { paused: Some(true), ..SettingsChange::default() },
        ..RoomChange::default()
    };
    fx.app.update_room(OPERATOR, &room_id("b"), &pause).expect("pause b");
    let admitted = |ticks: Vec<_>| -> Vec<(String, AdmissionOutcome)> {
        ticks
            .into_iter()
            .map(|t: Result<domain::service::RoomTick, _>| t.expect("tick"))
            .map(|t| (t.room.to_string(), t.admission))
            .collect()
    };
    let first = admitted(fx.app.tick_rooms().expect("rooms"));
    assert_eq!(
        first,
        vec![
            ("a".to_owned(), AdmissionOutcome::Admitted(1)),
            ("b".to_owned(), AdmissionOutcome::Paused),
            ("c".to_owned(), AdmissionOutcome::Admitted(3)),
        ]
    );
    let second = admitted(fx.app.tick_rooms().expect("rooms"));
    assert!(
        second.iter().all(|(_, o)| matches!(o, AdmissionOutcome::NotDue { .. } | AdmissionOutcome::Paused)),
        "{second:?}"
    );
    fx.advance(Duration::seconds(60));
    let third = admitted(fx.app.tick_rooms().expect("rooms"));
    assert_eq!(third[0].1, AdmissionOutcome::Admitted(1));
    assert_eq!(third[2].1, AdmissionOutcome::Admitted(3));
    assert_eq!(fx.app.room_view(&room_id("b")).expect("b").stats.cursor.admitted_through, 0);
}

/// A check works on several rooms at once (`Policy::room_checks_at_once`), and racing checks
/// of several instances still admit at most N per room per interval: each room's line decides
/// alone, whichever worker of whichever check asks. Every check answers in room order.
pub fn rooms_are_checked_at_once_and_answered_in_room_order<H: Harness>() {
    const CHECKS: usize = 4;
    let fx = Fixture::<H>::seeded();
    assert!(fx.app.policy().room_checks_at_once > 1, "the default checks rooms at once");
    let ids: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    for id in &ids {
        create(&fx, &draft(id, vec![], 2));
        for _ in 0..5 {
            join(&fx, &room_id(id));
        }
    }
    let app = &fx.app;
    let checks = race(CHECKS, |_| app.tick_rooms().expect("rooms"));
    let mut admitted = vec![0_u64; ids.len()];
    for check in &checks {
        let rooms: Vec<String> = check.iter().map(|t| t.as_ref().expect("tick").room.to_string()).collect();
        assert_eq!(rooms, ids, "every check answers in room order");
        for (i, tick) in check.iter().enumerate() {
            admitted[i] += tick.as_ref().map_or(0, |t| t.admission.admitted());
        }
    }
    assert_eq!(admitted, vec![2; ids.len()], "each room admitted its N once over the racing checks");
    for id in &ids {
        let view = fx.app.room_view(&room_id(id)).expect("view");
        assert_eq!((view.stats.cursor.admitted_through, view.stats.waiting), (2, 3), "{id}");
    }
}
