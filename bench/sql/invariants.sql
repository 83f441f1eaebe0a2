-- The invariants checked after every write phase; prints one row per check: name|violations.
-- The twin of crates/adapters-postgres/src/invariants.rs (`concert check-invariants`): keep the
-- two in step. Seats count live claims at the server's clock here (the bench runs on real time).
SELECT 'seats with two live reservations',
       count(*) FROM (SELECT seat_id FROM reservations
                      WHERE status = 'PAID' OR (status = 'HELD' AND held_until > now())
                      GROUP BY seat_id HAVING count(*) > 1) x
UNION ALL
SELECT 'balances not equal to their ledger',
       count(*) FROM accounts a
       LEFT JOIN (SELECT user_id, sum(amount) AS total FROM ledger_entries GROUP BY user_id) l USING (user_id)
       WHERE a.balance <> coalesce(l.total, 0)
UNION ALL
SELECT 'balances not equal to their last ledger entry',
       count(*) FROM accounts a
       JOIN LATERAL (SELECT balance_after FROM ledger_entries e WHERE e.user_id = a.user_id
                     ORDER BY entry_no DESC LIMIT 1) l ON TRUE
       WHERE l.balance_after <> a.balance
UNION ALL
SELECT 'negative balances', count(*) FROM accounts WHERE balance < 0
UNION ALL
SELECT 'paid reservations without exactly one payment of their price',
       count(*) FROM reservations r
       WHERE r.status = 'PAID'
         AND (SELECT count(*) FROM payments p WHERE p.reservation_id = r.id AND p.amount = r.price) <> 1
UNION ALL
SELECT 'payments of a reservation that is not PAID',
       count(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id WHERE r.status <> 'PAID'
UNION ALL
SELECT 'payments without exactly one ledger entry',
       count(*) FROM payments p
       LEFT JOIN (SELECT payment_id, count(*) AS n FROM ledger_entries
                  WHERE kind = 'PAYMENT' AND payment_id IS NOT NULL GROUP BY payment_id) l ON l.payment_id = p.id
       WHERE coalesce(l.n, 0) <> 1
UNION ALL
SELECT 'tokens that paid more than once',
       count(*) FROM (SELECT token FROM payments WHERE token IS NOT NULL GROUP BY token HAVING count(*) > 1) x
UNION ALL
SELECT 'tokens that paid and are not stored EXPIRED',
       count(*) FROM payments p JOIN queue_tokens t ON t.token = p.token WHERE t.status <> 'EXPIRED'
UNION ALL
-- The lines, one per room (crates/adapters-postgres/src/invariants.rs): one live token per user
-- per line, a gapless seq per line, each line's cursor consistent with its rows; a drawn line
-- keeps its entrants as arrivals 1..=P placed by queue_draw_positions. A token an admission
-- passed stays stored WAITING at or below the cursor, its place inside the range its tick
-- recorded in queue_admission_ranges (it reads ACTIVE off a plain admission's range, EXPIRED
-- ABANDONED off a skipping tick's, one without expires_at); any other WAITING token at or below
-- the cursor is a violation.
SELECT 'users with more than one live token in a line',
       count(*) FROM (SELECT room, user_id FROM queue_tokens WHERE status IN ('WAITING', 'ACTIVE')
                      GROUP BY room, user_id HAVING count(*) > 1) x
UNION ALL
SELECT 'lines with gaps in their token sequence',
       count(*) FROM (SELECT room FROM queue_tokens GROUP BY room HAVING count(seq) <> max(seq)) x
UNION ALL
SELECT 'lines with tokens but no cursor',
       count(*) FROM (SELECT DISTINCT room FROM queue_tokens) t LEFT JOIN queue_admission a ON a.room = t.room
       WHERE a.room IS NULL
UNION ALL
SELECT 'tokens on the wrong side of admitted_through',
       count(*) FROM queue_tokens t JOIN queue_admission a ON a.room = t.room
       WHERE t.seq > COALESCE(a.draw_entrants, 0) AND (t.status = 'WAITING') <> (t.seq > a.admitted_through)
         AND NOT (t.status = 'WAITING' AND EXISTS (SELECT 1 FROM queue_admission_ranges s
                    WHERE s.room = t.room AND s.after < t.seq AND s.through >= t.seq))
UNION ALL
SELECT 'drawn entrants WAITING at or below admitted_through in no range',
       count(*) FROM queue_admission a
       JOIN queue_draw_positions d ON d.room = a.room AND d.position <= a.admitted_through
       JOIN queue_tokens t ON t.room = d.room AND t.seq = d.arrival
       WHERE t.status = 'WAITING' AND NOT EXISTS (SELECT 1 FROM queue_admission_ranges s
               WHERE s.room = t.room AND s.after < d.position AND s.through >= d.position)
UNION ALL
SELECT 'drawn lines whose admitted entrants differ from their cursor',
       count(*) FROM queue_admission a CROSS JOIN LATERAL (SELECT count(*) AS admitted FROM queue_tokens t
         JOIN queue_draw_positions d ON d.room = t.room AND d.arrival = t.seq
         WHERE t.room = a.room AND t.seq <= a.draw_entrants
           AND (t.status <> 'WAITING' OR EXISTS (SELECT 1 FROM queue_admission_ranges s
                  WHERE s.room = t.room AND s.after < d.position AND s.through >= d.position))) n
       WHERE a.draw_entrants > 0 AND n.admitted <> LEAST(a.admitted_through, a.draw_entrants)
UNION ALL
SELECT 'drawn lines without a place for each entrant',
       count(*) FROM (SELECT a.room FROM queue_admission a LEFT JOIN queue_draw_positions d ON d.room = a.room
                        AND d.arrival <= a.draw_entrants AND d.position <= a.draw_entrants
                      WHERE a.draw_entrants IS NOT NULL GROUP BY a.room, a.draw_entrants
                      HAVING count(d.arrival) <> a.draw_entrants) x
UNION ALL
SELECT 'admitted_through past the last token',
       count(*) FROM (SELECT a.room FROM queue_admission a LEFT JOIN queue_tokens t ON t.room = a.room
                      GROUP BY a.room, a.admitted_through HAVING a.admitted_through > COALESCE(max(t.seq), 0)) x
UNION ALL
SELECT 'ranges past their line''s cursor',
       count(*) FROM queue_admission_ranges s LEFT JOIN queue_admission a ON a.room = s.room
       WHERE a.room IS NULL OR s.through > a.admitted_through
UNION ALL
SELECT 'ranges overlapping another of their line',
       count(*) FROM (SELECT after, lag(through) OVER (PARTITION BY room ORDER BY through) AS before
                      FROM queue_admission_ranges) s WHERE s.before > s.after
UNION ALL
SELECT 'lines whose abandoned count differs from their ABANDONED tokens',
       count(*) FROM queue_admission a
       WHERE a.abandoned <> (SELECT count(*) FROM queue_tokens t WHERE t.room = a.room AND t.expired_reason = 'ABANDONED')
         + (SELECT count(*) FROM queue_tokens t
            WHERE t.room = a.room AND t.status = 'WAITING'
              AND t.seq > COALESCE(a.draw_entrants, 0) AND t.seq <= a.admitted_through
              AND EXISTS (SELECT 1 FROM queue_admission_ranges s WHERE s.room = t.room AND s.after < t.seq AND s.through >= t.seq
                            AND s.expires_at IS NULL))
         + (SELECT count(*) FROM queue_draw_positions d JOIN queue_tokens t ON t.room = d.room AND t.seq = d.arrival
            WHERE d.room = a.room AND d.position <= a.admitted_through AND t.status = 'WAITING'
              AND EXISTS (SELECT 1 FROM queue_admission_ranges s
                          WHERE s.room = t.room AND s.after < d.position AND s.through >= d.position
                            AND s.expires_at IS NULL))
UNION ALL
SELECT 'idempotency records without their effect',
       count(*) FROM idempotency_keys k LEFT JOIN ledger_entries l ON l.id = k.ledger_entry_id
       WHERE l.id IS NULL OR l.user_id <> k.user_id OR k.status IS NULL;
