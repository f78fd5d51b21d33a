//! The Kubernetes object model as everynode serves it: the registry of resources, defaulting,
//! validation with upstream's messages, registry strategies, label and field selectors, quantities.
//!
//! Pure: no I/O and no clock. Everything here is a function of its arguments.

pub mod csr;
pub mod daemonset;
pub mod defaults;
pub mod event_versions;
pub mod field;
pub mod fnv;
pub mod names;
pub mod node_endpoint;
pub mod placement;
pub mod preview;
pub mod quantity;
pub mod registry;
pub mod rollout_controls;
pub mod scheduling;
pub mod selector;
pub mod service_ranges;
pub mod strategy;
pub mod table;
pub mod validation;

pub use k8s_openapi;
