-- Back to skipped tokens written one by one: every token the skips cover, still stored
-- WAITING, is written as it reads (EXPIRED, ABANDONED, at its tick's time) before the ranges go.
UPDATE queue_tokens t
   SET status = 'EXPIRED', expired_reason = 'ABANDONED', expires_at = s.at
  FROM queue_admission a, queue_skips s
 WHERE a.room = t.room AND s.room = t.room AND t.status = 'WAITING'
   AND s.after < COALESCE((SELECT d.position FROM queue_draw_positions d
                            WHERE d.room = t.room AND d.arrival = t.seq), t.seq)
   AND s.through >= COALESCE((SELECT d.position FROM queue_draw_positions d
                               WHERE d.room = t.room AND d.arrival = t.seq), t.seq)
   AND s.through <= a.admitted_through;

DROP TABLE queue_skips;
