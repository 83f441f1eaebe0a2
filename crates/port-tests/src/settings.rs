//! [`domain::ports::SettingsStore`]: the waiting room's live settings, shared by every instance.

use domain::queue::{QueueSettings, SettingsChange, SettingsPatch};
use domain::service::{Policy, Ticketing};
use time::Duration;

use crate::concurrency::race;
use crate::fixture::{Admission, Fixture};
use crate::Harness;

fn patch(
    paused: Option<bool>,
    batch: Option<i64>,
    interval: Option<i64>,
    ttl: Option<i64>,
    max_active: Option<Option<i64>>,
) -> SettingsPatch {
    SettingsPatch::new(SettingsChange {
        paused,
        admit_batch: batch,
        admit_interval_secs: interval,
        active_ttl_secs: ttl,
        max_active,
    })
    .unwrap()
}

/// Until an operator changes them, the settings are the store's starting values (the
/// harness's store starts at the defaults).
pub fn settings_are_the_defaults_until_updated<H: Harness>() {
    let fx = Fixture::<H>::bare();
    assert_eq!(fx.ports.settings.load().unwrap(), QueueSettings::default());
    assert_eq!(fx.app.queue_state().unwrap().settings, QueueSettings::default());
    assert_eq!(fx.harness.ports().settings.load().unwrap(), QueueSettings::default());
}

/// An update applies only the settings it names, returns the settings before and after, and
/// every later load (through these ports, another instance's use cases, or ports made anew)
/// sees the result.
pub fn update_returns_before_and_after_and_later_loads_see_it<H: Harness>() {
    let fx = Fixture::<H>::bare();
    let first = patch(Some(true), Some(5), None, None, None);
    let (before, after) = fx.ports.settings.update(&first, None).unwrap();
    assert_eq!(before, QueueSettings::default());
    assert_eq!(after, first.apply(QueueSettings::default()));
    assert!(after.paused);
    assert_eq!(after.admission.batch, 5);
    assert_eq!(fx.ports.settings.load().unwrap(), after);

    let second = patch(None, None, Some(30), Some(120), Some(Some(7)));
    let (before2, after2) = fx.ports.settings.update(&second, None).unwrap();
    assert_eq!(before2, after);
    assert!(after2.paused, "untouched");
    assert_eq!(after2.admission.batch, 5, "untouched");
    assert_eq!(after2.admission.interval, Duration::seconds(30));
    assert_eq!(after2.admission.active_ttl, Duration::seconds(120));
    assert_eq!(after2.admission.max_active, Some(7));

    let lift = patch(Some(false), None, None, None, Some(None));
    let (_, after3) = fx.ports.settings.update(&lift, None).unwrap();
    assert_eq!(after3.admission.max_active, None, "an explicit null lifts the cap");
    assert!(!after3.paused);

    let other = Ticketing::new(fx.ports.clone(), Policy::default());
    assert_eq!(other.queue_state().unwrap().settings, after3);
    assert_eq!(fx.harness.ports().settings.load().unwrap(), after3);
}

/// The operator's view: the settings in force with the counts, and the next admission (none
/// while paused; at once when nobody was admitted yet; one interval after the last one).
pub fn queue_state_reports_the_settings_in_force<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::batch(2, None));
    let _ = fx.issue(fx.user());
    let state = fx.app.queue_state().unwrap();
    assert_eq!((state.settings.admission.batch, state.next_admission_at), (2, Some(fx.now())));
    assert_eq!((state.stats.waiting, state.stats.issued_through), (1, 1));

    let paused = fx.app.update_queue("suite", &patch(Some(true), Some(9), None, None, None)).unwrap();
    assert!(paused.settings.paused);
    assert_eq!(paused.settings.admission.batch, 9);
    assert_eq!(paused.next_admission_at, None);
    assert_eq!(paused.stats.waiting, 1);

    let resumed = fx.app.update_queue("suite", &patch(Some(false), None, None, None, None)).unwrap();
    assert_eq!(resumed.next_admission_at, Some(fx.now()));
    let t0 = fx.now();
    fx.app.admit().unwrap();
    fx.advance(Duration::seconds(10));
    let state = fx.app.queue_state().unwrap();
    assert_eq!(state.next_admission_at, Some(t0 + Duration::seconds(60)));
    assert_eq!((state.stats.waiting, state.stats.active), (0, 1));
}

/// Updates of different settings made at the same time (by several operators or instances)
/// are all kept: none is lost to another's read-modify-write.
pub fn concurrent_updates_of_different_settings_lose_none<H: Harness>() {
    let fx = Fixture::<H>::bare();
    for round in 0..10_i64 {
        let patches = [
            patch(Some(round % 2 == 0), None, None, None, None),
            patch(None, Some(10 + round), None, None, None),
            patch(None, None, Some(20 + round), None, None),
            patch(None, None, None, Some(30 + round), None),
            patch(None, None, None, None, Some(Some(40 + round))),
        ];
        let w = &fx.world;
        race(patches.len(), |i| w.ports.settings.update(&patches[i], None).unwrap());
        let s = fx.ports.settings.load().unwrap();
        assert_eq!(s.paused, round % 2 == 0, "round {round}");
        assert_eq!(i64::from(s.admission.batch), 10 + round, "round {round}");
        assert_eq!(s.admission.interval, Duration::seconds(20 + round), "round {round}");
        assert_eq!(s.admission.active_ttl, Duration::seconds(30 + round), "round {round}");
        assert_eq!(s.admission.max_active.map(i64::from), Some(40 + round), "round {round}");
    }
}
