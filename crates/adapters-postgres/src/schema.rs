// @generated-compatible: written to match `diesel print-schema` for migrations/ (see diesel.toml).

diesel::table! {
    accounts (user_id) {
        user_id -> Uuid,
        balance -> Int8,
    }
}

diesel::table! {
    concerts (id) {
        id -> Uuid,
        title -> Text,
        artist -> Text,
        venue -> Text,
    }
}

diesel::table! {
    ledger_entries (id) {
        id -> Uuid,
        entry_no -> Int8,
        user_id -> Uuid,
        kind -> Text,
        amount -> Int8,
        balance_after -> Int8,
        at -> Timestamptz,
        payment_id -> Nullable<Uuid>,
        reservation_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        reservation_id -> Uuid,
        user_id -> Uuid,
        amount -> Int8,
        balance_after -> Int8,
        paid_at -> Timestamptz,
        token -> Nullable<Text>,
    }
}

diesel::table! {
    idempotency_keys (user_id, key) {
        user_id -> Uuid,
        key -> Text,
        fingerprint -> Text,
        status -> Nullable<Int4>,
        body -> Nullable<Text>,
        ledger_entry_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    operator_log (seq) {
        seq -> Int8,
        at -> Timestamptz,
        actor -> Text,
        action -> Text,
        target -> Text,
        before -> Nullable<Text>,
        after -> Text,
    }
}

diesel::table! {
    queue_admission (room) {
        admitted_through -> Int8,
        last_admission_at -> Nullable<Timestamptz>,
        room -> Text,
        draw_at -> Nullable<Timestamptz>,
        draw_entrants -> Nullable<Int8>,
        draw_seed -> Nullable<Int8>,
        abandoned -> Int8,
    }
}

diesel::table! {
    queue_draw_positions (room, arrival) {
        room -> Text,
        arrival -> Int8,
        position -> Int8,
    }
}

diesel::table! {
    queue_settings (id) {
        id -> Bool,
        paused -> Bool,
        admit_batch -> Int4,
        admit_interval_micros -> Int8,
        active_ttl_micros -> Int8,
        max_active -> Nullable<Int4>,
    }
}

diesel::table! {
    queue_sights (room, token) {
        room -> Text,
        token -> Text,
        seen_at -> Timestamptz,
    }
}

diesel::table! {
    queue_admission_ranges (room, through) {
        room -> Text,
        after -> Int8,
        through -> Int8,
        at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        swept_through -> Int8,
    }
}

diesel::table! {
    queue_tokens (room, seq) {
        seq -> Int8,
        token -> Text,
        user_id -> Uuid,
        status -> Text,
        issued_at -> Timestamptz,
        activated_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        room -> Text,
        expired_reason -> Nullable<Text>,
    }
}

diesel::table! {
    reservations (id) {
        id -> Uuid,
        user_id -> Uuid,
        schedule_id -> Uuid,
        seat_id -> Uuid,
        seat_number -> Int4,
        price -> Int8,
        status -> Text,
        created_at -> Timestamptz,
        held_until -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    room_concerts (concert_id) {
        concert_id -> Uuid,
        room_id -> Text,
    }
}

diesel::table! {
    rooms (id) {
        id -> Text,
        name -> Text,
        opens_at -> Nullable<Timestamptz>,
        prequeue_opens_at -> Nullable<Timestamptz>,
        draw_at_open -> Bool,
        abandon_after_micros -> Nullable<Int8>,
        closed -> Bool,
        paused -> Bool,
        admit_batch -> Int4,
        admit_interval_micros -> Int8,
        active_ttl_micros -> Int8,
        max_active -> Nullable<Int4>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    schedules (id) {
        id -> Uuid,
        concert_id -> Uuid,
        starts_at -> Timestamptz,
    }
}

diesel::table! {
    seats (id) {
        id -> Uuid,
        schedule_id -> Uuid,
        number -> Int4,
        price -> Int8,
    }
}

diesel::joinable!(idempotency_keys -> ledger_entries (ledger_entry_id));
diesel::joinable!(ledger_entries -> accounts (user_id));
diesel::joinable!(ledger_entries -> payments (payment_id));
diesel::joinable!(ledger_entries -> reservations (reservation_id));
diesel::joinable!(payments -> reservations (reservation_id));
diesel::joinable!(reservations -> schedules (schedule_id));
diesel::joinable!(reservations -> seats (seat_id));
diesel::joinable!(room_concerts -> concerts (concert_id));
diesel::joinable!(room_concerts -> rooms (room_id));
diesel::joinable!(schedules -> concerts (concert_id));
diesel::joinable!(seats -> schedules (schedule_id));

diesel::allow_tables_to_appear_in_same_query!(
    accounts,
    concerts,
    idempotency_keys,
    ledger_entries,
    operator_log,
    payments,
    queue_admission,
    queue_admission_ranges,
    queue_draw_positions,
    queue_settings,
    queue_sights,
    queue_tokens,
    reservations,
    room_concerts,
    rooms,
    schedules,
    seats,
);
