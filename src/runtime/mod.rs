//! See the crate docs.
pub mod ensemble;
pub mod postprocess;
pub mod stats;
