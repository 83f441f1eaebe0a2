//! What every handler shares: the use cases, and how to tell whether the store answers.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use domain::ports::StoreError;
use domain::service::Ticketing;

use crate::error::ApiError;

/// Whether the store can serve requests right now (`GET /health/ready`). The app wires the
/// store adapter's ping; any `Fn() -> Result<(), StoreError>` will do.
pub trait Readiness: Send + Sync {
    /// `Ok` when the store answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it cannot be reached (answered 503),
    /// [`StoreError::Internal`] when it answers wrongly (answered 500).
    fn check(&self) -> Result<(), StoreError>;
}

impl<F> Readiness for F
where
    F: Fn() -> Result<(), StoreError> + Send + Sync,
{
    fn check(&self) -> Result<(), StoreError> {
        self()
    }
}

/// How long a request may take before it is answered 503 `UNAVAILABLE`: under the contract's
/// 5 s bound for an unreachable database, whatever the store's own timeouts do.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(4_500);

/// The state behind every handler.
#[derive(Clone)]
pub struct ApiState {
    ticketing: Ticketing,
    readiness: Arc<dyn Readiness>,
    deadline: Duration,
}

impl ApiState {
    /// Wires the use cases and the readiness probe, with the [`DEFAULT_DEADLINE`].
    #[must_use]
    pub fn new(ticketing: Ticketing, readiness: Arc<dyn Readiness>) -> Self {
        Self { ticketing, readiness, deadline: DEFAULT_DEADLINE }
    }

    /// Sets how long a request may take before it is answered 503.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long a request may take before it is answered 503.
    #[must_use]
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The use cases.
    #[must_use]
    pub fn ticketing(&self) -> &Ticketing {
        &self.ticketing
    }

    /// The readiness probe.
    #[must_use]
    pub fn readiness(&self) -> &dyn Readiness {
        self.readiness.as_ref()
    }
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiState")
            .field("ticketing", &self.ticketing)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Runs a (sync, store-touching) domain call on actix's blocking pool so it never stalls an
/// async worker, inside the request's span so its logs stay attributed to the request.
///
/// # Errors
/// The call's own error, mapped to problem details; `INTERNAL` if the pool failed.
pub(crate) async fn blocking<T, E, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    let span = tracing::Span::current();
    web::block(move || span.in_scope(f)).await?.map_err(Into::into)
}
