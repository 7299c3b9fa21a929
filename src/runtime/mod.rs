//! What turns camera images into robot commands around the model: preprocessing, ensembling,
//! post-processing, and the policy session shared by the nodes and the bag evaluator.
pub mod batch;
pub mod compare;
pub mod device;
pub mod ensemble;
pub mod postprocess;
pub mod preprocess;
pub mod session;
pub mod stats;
