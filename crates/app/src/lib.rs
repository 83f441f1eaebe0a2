//! The `concert` binary's library: configuration, the wiring of the domain to its adapters,
//! and the lifecycle of the HTTP server, the scheduler and the schema task. It is the only
//! crate that knows every other one; `main.rs` only parses the command line, sets up logging
//! and calls [`commands::run`]. Tests use [`Application`] directly: build it from [`Settings`]
//! on port 0, read [`Application::port`], run it in a task.
//!
//! # Layout
//! - [`settings`]: the command line and its environment fallbacks ([`Cli`], [`Settings`]).
//! - [`startup`]: [`Application::build`], the schema task and the graceful stop.
//! - [`commands`]: `serve`, `migrate`, `seed-demo`, `check-invariants`.
//! - [`demo`]: the demo catalogue, seeded through the catalogue port.
//! - [`telemetry`]: the log subscriber (a dead log sink never stops the service) and the
//!   per-request span.

pub mod commands;
pub mod demo;
pub mod settings;
pub mod startup;
pub mod telemetry;

pub use settings::{Cli, Command, DatabaseSettings, LogFormat, LogSettings, QueueStoreKind, Settings, StoreKind};
pub use startup::Application;
