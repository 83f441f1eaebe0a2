-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;
-- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
-- GET /queue/token: QueueStore::find_with_cursor. The same tokens as the wrk data file:
-- users :base, :base + :step, ... (:count of them).
\set i random(0, :count - 1)
\set n :base + :i * :step
-- GET /queue/token
SELECT t.seq, t.token, t.user_id, t.status, t.issued_at, t.activated_at, t.expires_at, t.expired_reason, a.admitted_through, a.last_admission_at, a.draw_at, a.draw_entrants, a.draw_seed FROM queue_tokens t JOIN queue_admission a ON a.room = t.room WHERE t.token = (md5('t' || :n) || md5('u' || :n)) AND t.room = 'main';
