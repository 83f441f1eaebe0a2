//! The pure core of the concert ticketing service.
//!
//! Entities, newtypes and rules of the waiting room, the catalogue, seat holds, payments,
//! balances and idempotent retries; the use cases that combine them ([`service::Ticketing`]);
//! and the ports (traits) through which they reach storage, time and randomness. No I/O
//! framework, cache, wall clock or operating-system randomness is part of this crate:
//! `cargo tree -p domain -e normal` is the proof, and those live in adapter crates.
//!
//! # Layout
//! - [`ids`], [`money`]: validating newtypes.
//! - [`queue`], [`catalogue`], [`reservation`], [`account`], [`payment`], [`idempotency`]:
//!   entities, their state machines and the rules that read them at a given instant.
//! - [`ports`]: the traits adapters implement, with the atomicity each MUST guarantee.
//! - [`error`]: one error enum per use case, one variant per contract error code.
//! - [`service`]: the use cases.
//! - [`clock`], [`random`]: the time and randomness ports, with test doubles.

pub mod account;
pub mod catalogue;
pub mod clock;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod payment;
pub mod ports;
pub mod queue;
pub mod random;
pub mod reservation;
pub mod service;

#[cfg(test)]
mod service_tests;
