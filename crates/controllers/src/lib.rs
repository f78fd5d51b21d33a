//! everynode's controllers. Each is an API client only: it watches through the Kubernetes API
//! and writes through it, so it runs the same against everynode's API server or any other.

pub mod daemonset;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod interpod;
pub mod last_change;
pub mod leader;
pub mod metrics;
pub mod nodelifecycle;
pub mod podgc;
pub mod scheduler;
pub mod stores;
