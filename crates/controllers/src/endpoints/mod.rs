//! Endpoints and EndpointSlices for Services: upstream's endpoints, EndpointSlice and
//! EndpointSlice mirroring controllers. The decisions are pure functions (`subsets`, `slices`,
//! `mirroring`, over the shared rules in `pod_endpoint`); `controller` runs them.

pub mod controller;
pub mod mirroring;
pub mod pod_endpoint;
mod queue;
pub mod slices;
pub mod subsets;
