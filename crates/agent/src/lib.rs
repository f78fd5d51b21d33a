//! The everynode node agent: registers its Node, renews its Lease, and runs the pods bound to
//! it through a `Runtime` (host processes, or hollow for scale tests). It is an API client only.

pub mod agent;
pub mod attach;
pub mod cluster_dns;
pub mod dns;
pub mod endpoint;
pub mod endpoint_tls;
pub mod env;
pub mod events;
pub mod exec;
pub mod logs;
pub mod node;
pub mod pod;
pub mod port_forward;
pub mod probe;
pub mod proxy;
pub mod resource_metrics;
pub mod runtime;
pub mod service_cache;
pub mod shutdown;
pub mod static_pods;
pub mod tokens;
pub mod usage;
pub mod volumes;
