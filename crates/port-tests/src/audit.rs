//! The operator log ([`domain::ports::AuditStore`]): a change made with an
//! [`OperatorNote`] stores its line with it (the settings read and written, the concert or
//! schedule stored), a change refused or made without a note stores none, and the log reads
//! newest first, a page at a time.

use domain::audit::{AuditAction, OperatorAction, OperatorNote};
use domain::catalogue::AddSchedule;
use domain::ids::ConcertId;
use domain::queue::{QueueSettings, SettingsChange, SettingsPatch};
use time::Duration;

use crate::fixture::{new_concert, new_schedule, Admission, Fixture};
use crate::Harness;

fn note<H: Harness>(fx: &Fixture<H>, actor: &str) -> OperatorNote {
    OperatorNote { actor: actor.to_owned(), at: fx.now() }
}

fn actions<H: Harness>(fx: &Fixture<H>) -> Vec<OperatorAction> {
    fx.ports.audit.audit_log(None, 100).unwrap().into_iter().map(|e| e.action).collect()
}

/// A settings change with a note logs the settings it replaced and the ones it stored; the
/// same change without a note (a test's, a script's) logs nothing.
pub fn a_settings_change_logs_what_it_replaced<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let pause = SettingsPatch::new(SettingsChange { paused: Some(true), ..SettingsChange::default() }).unwrap();
    let (before, after) = fx.ports.settings.update(&pause, Some(&note(&fx, "0347f1ea"))).unwrap();
    assert_eq!(actions(&fx), [OperatorAction::queue_update(&note(&fx, "0347f1ea"), &before, &after)]);
    assert_eq!(before, QueueSettings::default());
    let resume = SettingsPatch::new(SettingsChange { paused: Some(false), ..SettingsChange::default() }).unwrap();
    fx.ports.settings.update(&resume, None).unwrap();
    assert_eq!(actions(&fx).len(), 1, "no note, no line");
    fx.advance(Duration::seconds(5));
    let batch = SettingsPatch::new(SettingsChange { admit_batch: Some(7), ..SettingsChange::default() }).unwrap();
    fx.ports.settings.update(&batch, Some(&note(&fx, "feedbeef"))).unwrap();
    let log = actions(&fx);
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].actor.as_str(), log[0].action, log[0].at), ("feedbeef", AuditAction::QueueUpdate, fx.now()));
    assert_eq!(
        log[0].before.as_deref(),
        Some("paused=false batch=100 interval=60s ttl=600s max_active=none"),
        "the resumed settings it replaced"
    );
    assert_eq!(log[0].after, "paused=false batch=7 interval=60s ttl=600s max_active=none");
}

/// A concert or a schedule stored with a note logs one line; one that is not stored (an id
/// taken, an unknown concert) logs none.
pub fn a_catalogue_change_logs_what_it_stored<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    let random = fx.ports.random.clone();
    let concert = new_concert(random.as_ref(), "Logged", 10_000, fx.now());
    let by = note(&fx, "0347f1ea");
    assert!(fx.ports.catalogue.create_concert(&concert, Some(&by)).unwrap());
    assert!(!fx.ports.catalogue.create_concert(&concert, Some(&by)).unwrap(), "the id is taken");
    let schedule = new_schedule(random.as_ref(), concert.concert.id, fx.now() + Duration::days(40), 1_000);
    assert_eq!(fx.ports.catalogue.add_schedule(&schedule, Some(&by)).unwrap(), AddSchedule::Added);
    let orphan = new_schedule(random.as_ref(), ConcertId::from_uuid(random.uuid()), fx.now() + Duration::days(5), 1);
    assert_eq!(fx.ports.catalogue.add_schedule(&orphan, Some(&by)).unwrap(), AddSchedule::NoSuchConcert);
    assert_eq!(
        actions(&fx),
        [OperatorAction::schedule_added(&by, &schedule), OperatorAction::concert_created(&by, &concert)],
        "newest first"
    );
}

/// The log reads newest first, `limit` lines below `before`.
pub fn the_log_pages_newest_first<H: Harness>() {
    let fx = Fixture::<H>::empty(Admission::default());
    for batch in 1..=5 {
        let patch =
            SettingsPatch::new(SettingsChange { admit_batch: Some(batch), ..SettingsChange::default() }).unwrap();
        fx.ports.settings.update(&patch, Some(&note(&fx, "0347f1ea"))).unwrap();
    }
    let all = fx.ports.audit.audit_log(None, 100).unwrap();
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
    let batches: Vec<String> = all.iter().map(|e| e.action.after.split(' ').nth(1).unwrap_or("").to_owned()).collect();
    assert_eq!(batches, ["batch=5", "batch=4", "batch=3", "batch=2", "batch=1"]);
    let page = fx.ports.audit.audit_log(None, 2).unwrap();
    assert_eq!(page, all[..2]);
    let next = fx.ports.audit.audit_log(Some(page[1].seq), 2).unwrap();
    assert_eq!(next, all[2..4]);
    assert_eq!(fx.ports.audit.audit_log(Some(all[4].seq), 2).unwrap(), []);
}
