//! See the crate docs.
pub mod preprocess;
