//! Cost of a queue position lookup (`QueueStore::find_with_cursor` for the token at the back
//! of the line) with 1,000 versus 1,000,000 WAITING tokens. Position is `seq -
//! admitted_through`, so the lookup is one unique-index probe joined to a one-row table and
//! should cost the same at both sizes: the target is a ratio of at most 1.5.
//!
//! Not a test: `make bench-position` (`cargo bench -p adapters-postgres --bench position`).
//! Each size gets its own database (cloned from the migrated template, dropped at the end);
//! the two are measured in alternating rounds so drift on a shared machine hits both alike.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark binary: failing loudly is the point")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use adapters_local::{OsRandom, SystemClock};
use adapters_postgres::testing::TestDatabase;
use adapters_postgres::PgStore;
use diesel::{Connection as _, PgConnection, RunQueryDsl as _};
use domain::clock::Clock;
use domain::queue::TokenValue;

const ROUNDS: usize = 7;
const LOOKUPS_PER_ROUND: usize = 1_000;

/// `n` WAITING tokens, seq 1..=n, value = seq as 64 hex digits; returns the last one.
fn fill(db: &TestDatabase, n: i64) -> TokenValue {
    let started = Instant::now();
    let mut conn = PgConnection::establish(&db.url()).unwrap();
    diesel::sql_query(
        "INSERT INTO queue_tokens (seq, token, user_id, status, issued_at) \
         SELECT g, lpad(to_hex(g), 64, '0'), gen_random_uuid(), 'WAITING', $1 FROM generate_series(1, $2) g",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(SystemClock.now())
    .bind::<diesel::sql_types::BigInt, _>(n)
    .execute(&mut conn)
    .unwrap();
    diesel::sql_query("VACUUM ANALYZE queue_tokens").execute(&mut conn).unwrap();
    eprintln!("filled {n:>9} tokens in {:.1?}", started.elapsed());
    TokenValue::parse(&format!("{n:064x}")).unwrap()
}

struct Subject {
    size: i64,
    _db: TestDatabase,
    store: PgStore,
    back: TokenValue,
    samples: Vec<Duration>,
}

impl Subject {
    fn new(size: i64) -> Self {
        let db = TestDatabase::create().unwrap();
        let back = fill(&db, size);
        let store = db.store().unwrap();
        Self { size, _db: db, store, back, samples: Vec::new() }
    }

    fn round(&mut self) {
        let ports = self.store.ports(Arc::new(SystemClock), Arc::new(OsRandom));
        for _ in 0..LOOKUPS_PER_ROUND {
            let started = Instant::now();
            let (token, cursor) = ports.queue.find_with_cursor(&self.back).unwrap().unwrap();
            self.samples.push(started.elapsed());
            assert_eq!(token.seq - cursor.admitted_through, self.size, "the back of the line");
        }
    }

    fn percentile(&mut self, p: f64) -> Duration {
        self.samples.sort();
        let i = ((self.samples.len() - 1) as f64 * p).round() as usize;
        self.samples[i]
    }
}

fn main() {
    let total = Instant::now();
    let mut small = Subject::new(1_000);
    let mut large = Subject::new(1_000_000);
    // Warm both pools and caches, then measure in alternating rounds.
    small.round();
    large.round();
    small.samples.clear();
    large.samples.clear();
    for _ in 0..ROUNDS {
        small.round();
        large.round();
    }
    let (s50, l50) = (small.percentile(0.5), large.percentile(0.5));
    let (s99, l99) = (small.percentile(0.99), large.percentile(0.99));
    let ratio = l50.as_secs_f64() / s50.as_secs_f64();
    println!();
    println!(
        "position lookup (find_with_cursor, token at the back of the line), {} lookups per size",
        ROUNDS * LOOKUPS_PER_ROUND
    );
    println!("{:>12} | {:>16} | {:>16}", "", "1,000 tokens", "1,000,000 tokens");
    println!("{:>12} | {:>13.1} µs | {:>13.1} µs", "median", micros(s50), micros(l50));
    println!("{:>12} | {:>13.1} µs | {:>13.1} µs", "p99", micros(s99), micros(l99));
    println!(
        "ratio (1,000,000 / 1,000, median) = {ratio:.2}  target <= 1.5: {}",
        if ratio <= 1.5 { "met" } else { "missed" }
    );
    eprintln!("total {:.1?}", total.elapsed());
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
