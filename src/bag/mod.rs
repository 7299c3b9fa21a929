//! rosbag2 reading and writing (MCAP and sqlite3) and open-loop policy evaluation on recordings.
//!
//! * [`metadata`], [`reader`], [`cdr`]: the raw layer: bag directories, time-ordered message streams,
//!   CDR decoding into the serde structs of [`crate::ros::msgs`].
//! * [`writer`], [`msgdefs`]: an MCAP rosbag2 writer with real `ros2msg` schemas.
//! * [`replay`], [`metrics`], [`report`], [`plots`], [`eval`]: replay through a policy and the report.
pub mod bench;
pub mod cdr;
pub mod error;
pub mod eval;
pub mod image;
pub mod lam;
pub mod mcap_guard;
pub mod metadata;
pub mod metrics;
pub mod msgdefs;
pub mod msgs;
pub mod output;
pub mod plots;
pub mod reader;
pub mod replay;
pub mod report;
pub mod writer;

pub use error::BagError;
pub mod session_policy;
