//! The waiting room's live settings: one row in `queue_settings`, shared by every instance and
//! kept across restarts. No row means nobody changed anything yet: the store answers the
//! starting values it was built with (`PgStore::with_starting_settings`).

use std::time::Instant;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Int4, Nullable};
use domain::audit::{OperatorAction, OperatorNote};
use domain::ports::{SettingsStore, StoreError};
use domain::queue::{AdmissionPolicy, QueueSettings, SettingsPatch};
use time::Duration;

use crate::error::{corrupt, Fail};
use crate::sql::prepared;
use crate::PgStore;

pub(crate) const LOAD: &str =
    "SELECT paused, admit_batch, admit_interval_micros, active_ttl_micros, max_active FROM queue_settings";

/// Creates the row with the starting values unless it exists, and locks and returns the row
/// in force: an upsert locks the existing row and returns its latest version, so concurrent
/// updates of any instance queue here and each applies its patch to the one before.
pub(crate) const LOCK: &str = "INSERT INTO queue_settings AS s \
       (id, paused, admit_batch, admit_interval_micros, active_ttl_micros, max_active) \
     VALUES (TRUE, $1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET id = s.id \
     RETURNING paused, admit_batch, admit_interval_micros, active_ttl_micros, max_active";

pub(crate) const STORE: &str = "UPDATE queue_settings \
     SET paused = $1, admit_batch = $2, admit_interval_micros = $3, active_ttl_micros = $4, max_active = $5";

#[derive(Debug, Clone, Copy, QueryableByName)]
struct SettingsRow {
    #[diesel(sql_type = Bool)]
    paused: bool,
    #[diesel(sql_type = Int4)]
    admit_batch: i32,
    #[diesel(sql_type = BigInt)]
    admit_interval_micros: i64,
    #[diesel(sql_type = BigInt)]
    active_ttl_micros: i64,
    #[diesel(sql_type = Nullable<Int4>)]
    max_active: Option<i32>,
}

impl SettingsRow {
    fn of(s: &QueueSettings) -> Result<Self, StoreError> {
        let a = s.admission;
        let int = |v: u32, what| i32::try_from(v).map_err(|_| StoreError::Internal(format!("{what} {v} too large")));
        let micros = |d: Duration, what| {
            i64::try_from(d.whole_microseconds()).map_err(|_| StoreError::Internal(format!("{what} too long")))
        };
        Ok(Self {
            paused: s.paused,
            admit_batch: int(a.batch, "admit batch")?,
            admit_interval_micros: micros(a.interval, "admit interval")?,
            active_ttl_micros: micros(a.active_ttl, "active TTL")?,
            max_active: a.max_active.map(|m| int(m, "max active")).transpose()?,
        })
    }

    fn into_domain(self) -> Result<QueueSettings, StoreError> {
        let count = |v: i32, what| u32::try_from(v).map_err(|_| corrupt(what));
        Ok(QueueSettings {
            paused: self.paused,
            admission: AdmissionPolicy {
                batch: count(self.admit_batch, "queue_settings.admit_batch")?,
                interval: Duration::microseconds(self.admit_interval_micros),
                active_ttl: Duration::microseconds(self.active_ttl_micros),
                max_active: self.max_active.map(|m| count(m, "queue_settings.max_active")).transpose()?,
                abandon_after: None,
            },
        })
    }
}

/// Binds a settings row as `$1..$5` of [`LOCK`] or [`STORE`].
macro_rules! bind_settings {
    ($sql:expr, $row:expr) => {
        prepared($sql)
            .bind::<Bool, _>($row.paused)
            .bind::<Int4, _>($row.admit_batch)
            .bind::<BigInt, _>($row.admit_interval_micros)
            .bind::<BigInt, _>($row.active_ttl_micros)
            .bind::<Nullable<Int4>, _>($row.max_active)
    };
}

impl SettingsStore for PgStore {
    fn load(&self) -> Result<QueueSettings, StoreError> {
        let row: Option<SettingsRow> = self.autocommit(|c| prepared(LOAD).get_result(c).optional())?;
        row.map_or(Ok(self.starting), SettingsRow::into_domain)
    }

    fn update(
        &self,
        patch: &SettingsPatch,
        note: Option<&OperatorNote>,
    ) -> Result<(QueueSettings, QueueSettings), StoreError> {
        let started = Instant::now();
        let starting = SettingsRow::of(&self.starting)?;
        let outcome = self.transaction("BEGIN", started, |tx| {
            let current: SettingsRow = bind_settings!(LOCK, starting).get_result(tx.conn()?)?;
            let before = current.into_domain()?;
            let after = patch.apply(before);
            let row = SettingsRow::of(&after)?;
            bind_settings!(STORE, row).execute(tx.conn()?)?;
            // The operator log's line commits with the change it records.
            if let Some(note) = note {
                crate::audit::write(tx.conn()?, &OperatorAction::queue_update(note, &before, &after))?;
            }
            Ok::<_, Fail<()>>((before, after))
        })?;
        outcome.map_err(|()| StoreError::Internal("the settings update refused itself".into()))
    }
}
