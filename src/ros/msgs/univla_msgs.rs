//! `univla_msgs`: this project's interface package (sources in `msg/` at the package root).
use serde::{Deserialize, Serialize};

use super::builtin_interfaces::Duration;
use super::std_msgs::Header;
use super::{action_part, ros_message, RosAction};

/// `univla_msgs/LatentActions`: the latent action tokens the policy chose at one step.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct LatentActions {
    pub header: Header,
    /// Vocabulary ids of the latent action tokens.
    pub ids: Vec<i32>,
    /// The same tokens as decoded text.
    pub tokens: String,
}
ros_message!(LatentActions, "univla_msgs", "LatentActions");

/// `univla_msgs/action/Execute_Goal`: run the policy on one language instruction.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ExecuteGoal {
    pub instruction: String,
    /// Control steps to run; 0 = no limit.
    pub max_steps: u32,
    /// Wall/sim time budget; zero = none.
    pub time_limit: Duration,
    /// `""` = node default, `"ensemble"` or `"open_loop"`.
    pub mode: String,
}

/// `univla_msgs/action/Execute_Result`.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ExecuteResult {
    /// One of the `ExecuteResult::*` outcome constants.
    pub outcome: u8,
    /// Control steps executed.
    pub steps: u32,
    /// Human-readable explanation of the outcome.
    pub reason: String,
}

impl ExecuteResult {
    pub const UNKNOWN: u8 = 0;
    pub const SUCCEEDED: u8 = 1;
    pub const ABORTED: u8 = 2;
    pub const CANCELED: u8 = 3;
    pub const PREEMPTED: u8 = 4;
    pub const REJECTED: u8 = 5;
    pub const STEP_LIMIT: u8 = 6;
    pub const TIME_LIMIT: u8 = 7;
}

/// `univla_msgs/action/Execute_Feedback`: published once per control step.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
pub struct ExecuteFeedback {
    pub step: u32,
    /// Vocabulary ids of this step's latent action tokens.
    pub latent_tokens: Vec<i32>,
    pub inference_latency_ms: f32,
    /// The action sent to the robot at this step.
    pub commanded_action: Vec<f64>,
}

action_part!(ExecuteGoal, ExecuteResult, ExecuteFeedback);

/// `univla_msgs/action/Execute`.
#[derive(Debug, Clone, Copy)]
pub struct Execute;

impl RosAction for Execute {
    const PACKAGE: &'static str = "univla_msgs";
    const NAME: &'static str = "Execute";
    type Goal = ExecuteGoal;
    type Result = ExecuteResult;
    type Feedback = ExecuteFeedback;
}
