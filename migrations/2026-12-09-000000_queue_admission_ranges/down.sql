-- Back to admitted tokens written one by one: every token stored WAITING in a plain
-- admission's range is written as it reads (ACTIVE, with the range's times), then those ranges
-- go and the table is the skips' again.
UPDATE queue_tokens t
   SET status = 'ACTIVE', activated_at = r.at, expires_at = r.expires_at
  FROM queue_admission a, queue_admission_ranges r
 WHERE a.room = t.room AND r.room = t.room AND t.status = 'WAITING' AND r.expires_at IS NOT NULL
   AND r.after < COALESCE((SELECT d.position FROM queue_draw_positions d
                            WHERE d.room = t.room AND d.arrival = t.seq), t.seq)
   AND r.through >= COALESCE((SELECT d.position FROM queue_draw_positions d
                               WHERE d.room = t.room AND d.arrival = t.seq), t.seq)
   AND r.through <= a.admitted_through;

DELETE FROM queue_admission_ranges WHERE expires_at IS NOT NULL;
DROP INDEX queue_admission_ranges_unswept;
ALTER TABLE queue_admission_ranges
    DROP CONSTRAINT queue_admission_ranges_expiry,
    DROP CONSTRAINT queue_admission_ranges_swept,
    DROP COLUMN expires_at,
    DROP COLUMN swept_through;
ALTER INDEX queue_admission_ranges_pkey RENAME TO queue_skips_pkey;
ALTER TABLE queue_admission_ranges RENAME CONSTRAINT queue_admission_ranges_range TO queue_skips_range;
ALTER TABLE queue_admission_ranges RENAME TO queue_skips;
