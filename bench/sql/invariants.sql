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
SELECT 'tokens that paid and are still ACTIVE',
       count(*) FROM payments p JOIN queue_tokens t ON t.token = p.token WHERE t.status = 'ACTIVE'
UNION ALL
SELECT 'users with more than one live token',
       count(*) FROM (SELECT user_id FROM queue_tokens WHERE status IN ('WAITING', 'ACTIVE')
                      GROUP BY user_id HAVING count(*) > 1) x
UNION ALL
SELECT 'gaps in the token sequence',
       (SELECT coalesce(max(seq), 0) - count(*) FROM queue_tokens)
UNION ALL
SELECT 'tokens on the wrong side of admitted_through',
       count(*) FROM queue_tokens t CROSS JOIN queue_admission a
       WHERE (t.status = 'WAITING') <> (t.seq > a.admitted_through)
UNION ALL
SELECT 'admitted_through past the last token',
       count(*) FROM queue_admission a
       WHERE a.admitted_through > (SELECT coalesce(max(seq), 0) FROM queue_tokens)
UNION ALL
SELECT 'idempotency records without their effect',
       count(*) FROM idempotency_keys k LEFT JOIN ledger_entries l ON l.id = k.ledger_entry_id
       WHERE l.id IS NULL OR l.user_id <> k.user_id OR k.status IS NULL;
