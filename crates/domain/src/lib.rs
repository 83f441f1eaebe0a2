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
//! - [`call`]: the point of no return of a store call, for callers that answer on a timer.

/// Declares an enum whose variants are spelled as in the contract (`WAITING`, `HELD`, ...), in
/// storage and on the wire alike: the one place that lists the spelling derives and the
/// `as_str` helper, so every status enum is declared the same way.
macro_rules! spelled_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            strum::IntoStaticStr,
            strum::EnumString,
            strum::VariantNames,
            strum::Display,
        )]
        #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The contract's spelling, also used in storage.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

pub mod account;
pub mod audit;
pub mod call;
pub mod catalogue;
pub mod clock;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod metric_names;
pub mod money;
pub mod payment;
pub mod ports;
pub mod presence;
pub mod queue;
pub mod random;
pub mod reservation;
pub mod room;
pub mod service;

#[cfg(test)]
mod service_tests;
