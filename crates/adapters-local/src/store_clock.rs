//! [`StoreClock`]: the domain's `Clock` for an instance that shares its store with others. It
//! tells the time of the store's clock (`domain::clock::StoreTime`), not of this machine's.
//!
//! Every expiry more than one instance can act on is decided on one clock: the store's. Asking
//! the store for every `now` would cost a round trip per request, so the clock samples the
//! store's time (`sync`, every second from a background thread) and carries it forward on
//! this process's monotonic clock ([`Instant`]) in between:
//!
//! - a sample is the store's answer plus half the round trip (the store read its clock
//!   somewhere between sending and answering), good to within that half round trip;
//! - between samples the store's time is the sample plus the monotonic time since, which no
//!   setting of the wall clock moves (an instance 30 s fast, or stepped by NTP, tells the same
//!   time as the others), and which drifts from the store's by at most
//!   [`MAX_DRIFT_PPM`] parts per million;
//! - a new sample replaces the one held only if it is at least as precise as the held one has
//!   become with that drift, so a slow answer under load does not trade a sample good to a
//!   millisecond for one good to a tenth of a second.
//!
//! Before the first sample (the store down at start-up) the clock tells the wall clock's time:
//! nothing that needs the store can run then anyway, and the first sample, taken as soon as
//! the store answers, replaces it.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use domain::clock::{truncate_to_micros, Clock, StoreTime};
use domain::ports::StoreError;
use time::OffsetDateTime;

/// The most a machine's monotonic clock is taken to drift from the store's, in parts per
/// million (quartz oscillators stay within about 50).
pub const MAX_DRIFT_PPM: u32 = 100;

/// The store's time as measured once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// The store's time at `taken`.
    store: OffsetDateTime,
    /// When this process took it, on its monotonic clock.
    taken: Instant,
    /// How far `store` may be from the store's clock at `taken`: half the round trip.
    error: Duration,
}

impl Sample {
    fn at(&self, now: Instant) -> OffsetDateTime {
        self.store + now.saturating_duration_since(self.taken)
    }

    /// The error of this sample carried forward to `now`.
    fn error_at(&self, now: Instant) -> Duration {
        let age = now.saturating_duration_since(self.taken);
        self.error + age / 1_000_000 * MAX_DRIFT_PPM
    }
}

/// What one [`StoreClock::sync`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// How far this machine's wall clock is ahead of the store's (negative: behind).
    pub wall_ahead: time::Duration,
    /// The round trip of the store call.
    pub round_trip: Duration,
    /// Whether this sample replaced the one held.
    pub kept: bool,
}

/// The store's clock, sampled and carried forward on the monotonic clock (see the module docs).
pub struct StoreClock {
    source: Arc<dyn StoreTime>,
    sample: RwLock<Option<Sample>>,
}

impl std::fmt::Debug for StoreClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreClock").field("sample", &*self.read()).finish_non_exhaustive()
    }
}

impl StoreClock {
    /// A clock that follows `source`; it tells the wall clock's time until its first
    /// [`StoreClock::sync`].
    #[must_use]
    pub fn new(source: Arc<dyn StoreTime>) -> Self {
        Self { source, sample: RwLock::new(None) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<Sample>> {
        self.sample.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the clock has sampled the store at least once.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.read().is_some()
    }

    /// Asks the store for its time and keeps the answer if it is at least as precise as the
    /// sample held.
    ///
    /// # Errors
    /// The store's error; the sample held stays in use.
    pub fn sync(&self) -> Result<Synced, StoreError> {
        let sent = Instant::now();
        let store = self.source.read_time()?;
        let back = Instant::now();
        let wall = OffsetDateTime::now_utc();
        let round_trip = back.saturating_duration_since(sent);
        let half = round_trip / 2;
        let fresh = Sample { store: store + half, taken: back, error: half };
        let mut held = self.sample.write().unwrap_or_else(PoisonError::into_inner);
        let kept = held.is_none_or(|h| fresh.error <= h.error_at(back));
        if kept {
            *held = Some(fresh);
        }
        Ok(Synced { wall_ahead: wall - fresh.store, round_trip, kept })
    }

    /// Spawns a thread that calls [`StoreClock::sync`] at once and then every `every`, and
    /// hands each result to `report`, for as long as anything else holds the clock.
    ///
    /// # Errors
    /// The operating system's, when it cannot start a thread.
    pub fn keep_in_sync(
        self: &Arc<Self>,
        every: Duration,
        mut report: impl FnMut(Result<Synced, StoreError>) + Send + 'static,
    ) -> std::io::Result<()> {
        let clock = Arc::downgrade(self);
        std::thread::Builder::new().name("store-clock".into()).spawn(move || loop {
            let Some(held) = clock.upgrade() else { return };
            report(held.sync());
            drop(held);
            std::thread::sleep(every);
        })?;
        Ok(())
    }
}

impl Clock for StoreClock {
    fn now(&self) -> OffsetDateTime {
        let sample = *self.read();
        truncate_to_micros(sample.map_or_else(OffsetDateTime::now_utc, |s| s.at(Instant::now())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use std::sync::Mutex;

    use domain::clock::{ManualClock, MockStoreTime};
    use time::macros::datetime;

    use super::*;

    /// A store whose clock is a `ManualClock` and whose answers take `delay` each.
    struct SlowStore {
        clock: ManualClock,
        delay: Mutex<Duration>,
    }

    impl StoreTime for SlowStore {
        fn read_time(&self) -> Result<OffsetDateTime, StoreError> {
            let delay = *self.delay.lock().unwrap();
            std::thread::sleep(delay);
            Ok(self.clock.now())
        }
    }

    #[test]
    fn the_clock_tells_the_stores_time_whatever_the_wall_clock_says() {
        // The store's clock is a year before this machine's wall clock.
        let store = ManualClock::new(datetime!(2025-06-01 12:00 UTC));
        let clock = StoreClock::new(Arc::new(SlowStore { clock: store.clone(), delay: Mutex::default() }));
        assert!(!clock.is_synced());
        let synced = clock.sync().unwrap();
        assert!(synced.kept && clock.is_synced());
        assert!(synced.wall_ahead > time::Duration::days(300), "{synced:?}");
        let told = clock.now();
        assert!(told >= store.now() && told - store.now() < time::Duration::seconds(1), "{told}");
    }

    #[test]
    fn between_samples_the_time_moves_on_the_monotonic_clock() {
        let store = ManualClock::new(datetime!(2025-06-01 12:00 UTC));
        let clock = StoreClock::new(Arc::new(SlowStore { clock: store.clone(), delay: Mutex::default() }));
        clock.sync().unwrap();
        let first = clock.now();
        std::thread::sleep(Duration::from_millis(30));
        let later = clock.now();
        assert!(later - first >= time::Duration::milliseconds(30), "{first} -> {later}");
        assert!(later - first < time::Duration::seconds(1), "{first} -> {later}");
    }

    #[test]
    fn a_slow_answer_does_not_replace_a_precise_sample() {
        let store = ManualClock::new(datetime!(2025-06-01 12:00 UTC));
        let source = Arc::new(SlowStore { clock: store.clone(), delay: Mutex::new(Duration::ZERO) });
        let clock = StoreClock::new(source.clone());
        assert!(clock.sync().unwrap().kept);
        // The store's clock jumps 10 s while answering slowly: the precise sample stays.
        store.advance(time::Duration::seconds(10));
        *source.delay.lock().unwrap() = Duration::from_millis(40);
        let slow = clock.sync().unwrap();
        assert!(!slow.kept && slow.round_trip >= Duration::from_millis(40), "{slow:?}");
        assert!(store.now() - clock.now() > time::Duration::seconds(9), "the held sample is still in use");
        // A precise answer again replaces it.
        *source.delay.lock().unwrap() = Duration::ZERO;
        assert!(clock.sync().unwrap().kept);
        assert!((clock.now() - store.now()).abs() < time::Duration::seconds(1));
    }

    #[test]
    fn a_sample_loses_precision_with_age() {
        let taken = Instant::now();
        let s = Sample { store: datetime!(2025-06-01 12:00 UTC), taken, error: Duration::from_millis(1) };
        assert_eq!(s.error_at(taken), Duration::from_millis(1));
        // 100 ppm of 100 s is 10 ms.
        assert_eq!(s.error_at(taken + Duration::from_secs(100)), Duration::from_millis(11));
    }

    #[test]
    fn a_failed_sync_keeps_the_time_it_had() {
        let mut source = MockStoreTime::new();
        let mut answers = vec![
            Err(StoreError::Unavailable("down".into())),
            Ok(datetime!(2025-06-01 12:00 UTC)),
            Err(StoreError::Unavailable("down".into())),
        ];
        source.expect_read_time().times(3).returning(move || answers.remove(0));
        let clock = StoreClock::new(Arc::new(source));
        assert!(clock.sync().is_err());
        assert!(!clock.is_synced(), "the wall clock until the first answer");
        assert!((clock.now() - OffsetDateTime::now_utc()).abs() < time::Duration::seconds(1));
        clock.sync().unwrap();
        assert!(clock.sync().is_err());
        assert!(clock.now() - datetime!(2025-06-01 12:00 UTC) < time::Duration::seconds(1), "the sample is kept");
    }

    #[test]
    fn the_sync_thread_ends_with_the_clock() {
        let store = ManualClock::new(datetime!(2025-06-01 12:00 UTC));
        let clock = Arc::new(StoreClock::new(Arc::new(SlowStore { clock: store, delay: Mutex::default() })));
        let (tx, rx) = std::sync::mpsc::channel();
        clock
            .keep_in_sync(Duration::from_millis(5), move |r| {
                let _sent = tx.send(r.is_ok());
            })
            .unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
        assert!(clock.is_synced());
        drop(clock);
        // The thread drops its sender when it sees the clock gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok() {}
        assert!(Instant::now() < deadline, "the thread did not end");
    }
}
