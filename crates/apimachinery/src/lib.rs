//! What only the API server needs of the wire, apart from the object model: server-side apply
//! and managed fields, strategic merge patch, the protobuf envelope, OpenAPI documents and
//! duplicate-field detection. Kubernetes separates these the same way (`apimachinery` beside
//! `api`): clients, controllers and the agent never link them.
//!
//! Pure: no I/O and no clock, like `everynode-api`, on which it builds.

pub mod channel;
pub mod duplicate_fields;
pub mod managed_fields;
pub mod nesting;
pub mod openapi;
pub mod openapi_v2;
pub mod protobuf;
pub mod spdy;
pub mod strategic_merge;
