//! The DaemonSet controller: one pod per eligible node (spec §2). `pass` decides, purely;
//! `controller` watches the API and carries the decisions out.

pub mod available;
pub mod backoff;
pub mod controller;
pub mod expectations;
pub mod first_named;
pub mod pass;
pub mod progress;
pub mod rollback;
pub mod triggers;

#[cfg(test)]
mod scenarios;
