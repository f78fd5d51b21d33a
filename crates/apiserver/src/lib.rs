//! The everynode API server: Kubernetes REST over HTTP(S) for the resources in
//! `everynode_api::registry`, backed by an `everynode_store::Store`, with a watch cache.
//!
//! A request goes: `http` (router, authentication) → `request` (typed path, query and options)
//! → `handlers` (one per verb and subresource) → `registry` (read-modify-write with defaulting,
//! validation and field tracking, as `Write`s) → the store, and out through `response`.

pub mod admission;
pub mod agent_client;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod body;
pub mod bootstrap_token;
pub mod cache;
pub mod credentials;
pub mod csr;
pub mod decoded;
pub mod discovery;
pub mod error;
pub mod fairness;
pub mod handlers;
pub mod health;
pub mod http;
pub mod inflight;
pub mod metrics;
pub mod namespaces;
pub mod object;
pub mod openapi;
pub mod registry;
pub mod request;
pub mod resource_metrics;
pub mod response;
pub mod root_ca;
pub mod server;
pub mod service_account_token;
pub mod service_accounts;
pub mod service_alloc;
pub mod snapshot;
pub mod spdy;
pub mod watch;
pub mod write;
