//! The pure core of the concert ticketing service.
//!
//! Entities, newtypes and rules of the waiting room, the catalogue, seat holds, payments and
//! balances; the use cases that combine them ([`service::Ticketing`]); and the ports (traits)
//! through which they reach storage, time and randomness. No I/O framework is a dependency of
//! this crate: `cargo tree -p domain -e normal` is the proof.
//!
//! # Layout
//! - [`ids`], [`money`]: validating newtypes.
//! - [`queue`], [`catalogue`], [`reservation`], [`account`], [`payment`]: entities, their state
//!   machines and the rules that read them at a given instant.
//! - [`ports`]: the traits adapters implement, with the atomicity each MUST guarantee.
//! - [`error`]: one error enum per use case, one variant per contract error code.
//! - [`service`]: the use cases.
//! - [`queue_cache`]: a decorator of the queue port that answers WAITING polls from memory.
//! - [`demo`]: the demo catalogue, as data.
//! - [`clock`]: the clock port and its system and manual implementations.

pub mod account;
pub mod catalogue;
pub mod clock;
pub mod demo;
pub mod error;
pub mod ids;
pub mod money;
pub mod payment;
pub mod ports;
pub mod queue;
pub mod queue_cache;
pub mod reservation;
pub mod service;

#[cfg(test)]
mod service_tests;
