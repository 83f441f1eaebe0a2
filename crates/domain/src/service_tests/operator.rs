//! The operator's use cases.

use super::*;

fn stats() -> QueueStats {
    QueueStats {
        waiting: 3,
        active: 2,
        issued_through: 9,
        cursor: QueueCursor { admitted_through: 6, last_admission_at: Some(t0() - secs(10)), epoch: 0, draw: None },
        now: t0(),
        abandoned: 0,
    }
}

#[test]
fn the_queue_state_combines_the_stores_counts_with_the_settings_in_force() {
    let mut w = World::new().with_settings(settings(5));
    w.queue.expect_stats().returning(|| Ok(stats()));
    let state = w.app().queue_state().unwrap();
    assert_eq!((state.stats, state.settings), (stats(), settings(5)));
    assert_eq!(state.next_admission_at, Some(t0() + secs(50)));

    let mut w = World::new().with_settings(settings(5));
    w.queue.expect_stats().returning(|| Err(down()));
    assert_eq!(w.app().queue_state(), Err(down()));
}

#[test]
fn an_update_returns_the_state_under_the_new_settings() {
    let patch = SettingsPatch::new(SettingsChange { paused: Some(true), ..SettingsChange::default() }).unwrap();
    let paused = QueueSettings { paused: true, ..settings(5) };
    let mut w = World::new();
    w.settings
        .expect_update()
        .withf(move |p, note| *p == patch && note.is_some_and(|n| n.actor == "ops"))
        .times(1)
        .returning(move |_, _| Ok((settings(5), paused)));
    w.queue.expect_stats().returning(|| Ok(stats()));
    let state = w.app().update_queue("ops", &patch).unwrap();
    assert_eq!((state.settings, state.next_admission_at), (paused, None));

    let mut w = World::new();
    w.settings.expect_update().returning(|_, _| Err(down()));
    assert_eq!(w.app().update_queue("ops", &patch), Err(UpdateQueueError::Store(down())));
}

fn draft(starts_at: OffsetDateTime) -> ConcertDraft {
    ConcertDraft {
        title: "T".into(),
        artist: String::new(),
        venue: String::new(),
        schedules: vec![ScheduleDraft { starts_at, seats: vec![SeatDraft { number: 1, price: 10 }] }],
    }
}

#[test]
fn create_concert_stores_exactly_what_it_validated_at_now() {
    let mut w = World::new();
    let stored = Arc::new(Mutex::new(None));
    let keep = stored.clone();
    w.catalogue.expect_create_concert().times(1).returning(move |c, _| {
        *lock(&keep) = Some(c.clone());
        Ok(true)
    });
    let created = w.app().create_concert("ops", &draft(t0() + Duration::microseconds(1))).unwrap();
    assert_eq!(lock(&stored).clone(), Some(created.clone()));
    assert_eq!(created.schedules[0].concert_id, created.concert.id);

    // Starting at now is not in the future: refused before the store.
    let app = World::new().app();
    assert!(matches!(app.create_concert("ops", &draft(t0())), Err(CreateConcertError::Invalid(_))));

    let mut w = World::new();
    w.catalogue.expect_create_concert().returning(|_, _| Ok(false));
    assert!(matches!(w.app().create_concert("ops", &draft(t0() + secs(1))), Err(CreateConcertError::Store(_))));
    let mut w = World::new();
    w.catalogue.expect_create_concert().returning(|_, _| Err(down()));
    assert_eq!(w.app().create_concert("ops", &draft(t0() + secs(1))), Err(CreateConcertError::Store(down())));
}

#[test]
fn add_schedule_says_why_a_schedule_was_not_added() {
    let concert = ConcertId::from_uuid(id());
    let schedule = ScheduleDraft { starts_at: t0() + secs(1), seats: vec![SeatDraft { number: 1, price: 10 }] };
    let mut w = World::new();
    w.catalogue
        .expect_add_schedule()
        .withf(move |s, note| s.concert_id == concert && note.is_some())
        .returning(|_, _| Ok(AddSchedule::Added));
    let added = w.app().add_schedule("ops", concert, &schedule).unwrap();
    assert_eq!((added.concert_id, added.starts_at, added.seats.len()), (concert, t0() + secs(1), 1));

    let cases = [
        (Ok(AddSchedule::NoSuchConcert), Some(AddScheduleError::NotFound)),
        (Ok(AddSchedule::AlreadyExists), None),
        (Err(down()), Some(AddScheduleError::Store(down()))),
    ];
    for (answer, expected) in cases {
        let mut w = World::new();
        w.catalogue.expect_add_schedule().returning(move |_, _| answer.clone());
        let result = w.app().add_schedule("ops", concert, &schedule);
        match expected {
            Some(e) => assert_eq!(result, Err(e)),
            None => assert!(matches!(result, Err(AddScheduleError::Store(StoreError::Internal(_))))),
        }
    }

    let app = World::new().app();
    let past = ScheduleDraft { starts_at: t0(), ..schedule };
    assert!(matches!(app.add_schedule("ops", concert, &past), Err(AddScheduleError::Invalid(_))));
}

#[test]
fn sales_are_read_at_now_and_an_unknown_concert_is_not_found() {
    let concert = ConcertId::from_uuid(id());
    let row = ScheduleSales {
        schedule_id: ScheduleId::from_uuid(id()),
        starts_at: t0(),
        total_seats: 2,
        sold: 1,
        held: 0,
        available: 1,
        revenue: Won::new(10),
    };
    let mut w = World::new();
    w.catalogue.expect_sales().with(eq(concert), eq(t0())).returning(move |_, _| Ok(Some(vec![row])));
    assert_eq!(w.app().sales(concert), Ok(vec![row]));
    let mut w = World::new();
    w.catalogue.expect_sales().returning(|_, _| Ok(None));
    assert_eq!(w.app().sales(concert), Err(SalesError::NotFound));
    let mut w = World::new();
    w.catalogue.expect_sales().returning(|_, _| Err(down()));
    assert_eq!(w.app().sales(concert), Err(SalesError::Store(down())));
}

#[test]
fn the_static_policy_defaults_are_the_contracts() {
    let p = Policy::default();
    assert_eq!((p.hold, p.max_holds_per_user, p.idempotency_ttl), (secs(300), 4, secs(86_400)));
    assert_eq!((p.sweep_batch, p.sweep_batches_per_tick), (1_000, 10));
}
