-- The invariants checked after every write phase; prints one row per check: name|violations.
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
SELECT 'negative balances', count(*) FROM accounts WHERE balance < 0
UNION ALL
SELECT 'paid reservations without exactly one payment of their price',
       count(*) FROM reservations r
       WHERE r.status = 'PAID'
         AND (SELECT count(*) FROM payments p WHERE p.reservation_id = r.id AND p.amount = r.price) <> 1;
