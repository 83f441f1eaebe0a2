//! The Redis queue adapter (being built).
