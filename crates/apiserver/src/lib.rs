//! The everynode API server: Kubernetes REST over HTTP(S) for the resources in
//! `everynode_api::registry`, backed by an `everynode_store::Store`, with a watch cache.

pub mod admission;
pub mod api;
pub mod auth;
pub mod cache;
pub mod credentials;
pub mod discovery;
pub mod error;
pub mod http;
pub mod logs;
pub mod namespaces;
pub mod object;
pub mod openapi;
pub mod request;
pub mod server;
pub mod watch;
