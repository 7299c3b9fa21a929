//! univla_ros: run the UniVLA robot policy (OpenDriveLab, RSS 2025) on LibTorch and drive robots
//! over ROS 2.
//!
//! Layers, one folder each:
//! * [`model`]: the networks (fused DINOv2+SigLIP backbone, projector, LLaMA-2, action heads),
//!   checkpoint reading, tokenizer and prompts. Pure tensor code, no I/O besides files.
//! * [`runtime`]: image preprocessing, temporal ensembling, post-processing and the policy
//!   session that the nodes and the bag evaluator share.
//! * [`lam`]: the latent action model (task-centric latent actions from frame pairs).
//! * [`ros`]: the ROS 2 boundary (messages, `--ros-args`, QoS, transport on `ros2-client`).
//! * [`bag`]: rosbag2 reading/writing (MCAP and sqlite3) and replay evaluation.
//! * [`serve`]: the policy as an openpi-compatible WebSocket server (sessions, batching).
//! * [`remote`]: the client of a policy server (openpi's WebSocket + msgpack-numpy protocol), for
//!   nodes that run without the model.
pub mod bag;
pub mod lam;
pub mod model;
pub mod node;
pub mod remote;
pub mod ros;
pub mod runtime;
pub mod serve;
