//! The names of the contract's metric families that more than one adapter records (the HTTP
//! layer and the scheduler), declared once. Names only: recording them is the adapters' job.

/// Counter: store failures, by `kind` ([`crate::error::StoreError::kind`]).
pub const STORE_ERRORS_TOTAL: &str = "store_errors_total";

/// Counter: queue tokens admitted by this instance's scheduler, by `room`.
pub const QUEUE_TOKENS_ADMITTED_TOTAL: &str = "queue_tokens_admitted_total";

/// Counter: WAITING tokens this instance's scheduler skipped because their buyer had left, by
/// `room`.
pub const QUEUE_TOKENS_ABANDONED_TOTAL: &str = "queue_tokens_abandoned_total";

/// The label naming a queue family's room.
pub const ROOM_LABEL: &str = "room";
