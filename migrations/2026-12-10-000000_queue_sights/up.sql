-- Presence in a narrow table of its own.
--
-- A room that drops absent places hands each instance's sights to the store once per 4 s
-- bucket (`QueueStore::note_seen`): with ten thousand buyers polling one room, ten thousand
-- writes per bucket. Kept in `queue_tokens.last_seen_at`, each was an update of a wide row
-- whose page was full, so not HOT: a new version of the row and an entry in every index of
-- the table, plus the row lock the batch took first (SKIP LOCKED, so as not to deadlock with
-- an admission or a draw holding the same rows). A batch of 10,000 cost ~156 ms of the
-- server's CPU every 4 s, taken from the polls it was measured beside.
--
-- Here a sight is a row of three columns keyed by (room, token). Nothing else writes or locks
-- it but `note_seen` (an upsert, in token order: two instances' batches lock rows in one order,
-- so they cannot deadlock) and the admission walk, which drops the sights of the places it
-- walked without waiting for a row a batch holds (SKIP LOCKED). `seen_at` is in no index, and
-- the pages keep half their room free, so an update is HOT and pruned on the page without a
-- vacuum. A token's last sight is GREATEST(issued_at, seen_at), as it was.
CREATE TABLE queue_sights (
    room    text NOT NULL,
    token   text NOT NULL,
    seen_at timestamptz NOT NULL,
    PRIMARY KEY (room, token)
) WITH (fillfactor = 50);

INSERT INTO queue_sights (room, token, seen_at)
SELECT room, token, last_seen_at FROM queue_tokens
 WHERE last_seen_at IS NOT NULL AND status = 'WAITING';

ALTER TABLE queue_tokens DROP COLUMN last_seen_at;
