//! A synthetic robot for trying the nodes without hardware or a ROS installation: publishes a
//! moving rgb8 test pattern, joint states for the given joints and, optionally, an instruction.
use std::time::{Duration, Instant};

use crate::ros::msgs::sensor_msgs::{Image, JointState};
use crate::ros::msgs::std_msgs::{Header, StringMsg};
use crate::ros::{Qos, RosNode};

use super::error::NodeError;

/// What the synthetic robot publishes.
#[derive(Clone, Debug)]
pub struct SyntheticRobotConfig {
    pub image_topic: String,
    pub width: u32,
    pub height: u32,
    pub rate_hz: f64,
    pub joint_state_topic: String,
    pub joint_names: Vec<String>,
    pub joint_value: f64,
    pub instruction_topic: String,
    /// Published once per second while running (nodes accept it when ready).
    pub instruction: Option<String>,
    pub duration: Duration,
}

impl Default for SyntheticRobotConfig {
    fn default() -> Self {
        Self {
            image_topic: "image_raw".into(),
            width: 640,
            height: 480,
            rate_hz: 30.0,
            joint_state_topic: "joint_states".into(),
            joint_names: Vec::new(),
            joint_value: 0.0,
            instruction_topic: "instruction".into(),
            instruction: None,
            duration: Duration::from_secs(60),
        }
    }
}

/// A moving diagonal gradient (changes every frame, so every frame differs).
pub fn test_pattern(width: u32, height: u32, frame: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let v = x.wrapping_add(y).wrapping_add(frame * 4);
            data.extend_from_slice(&[
                (v % 256) as u8,
                ((x * 255) / width.max(1)) as u8,
                ((y * 255) / height.max(1)) as u8,
            ]);
        }
    }
    data
}

/// Accepted publishing rates: at most 1 kHz, at least one frame per 100 s (a smaller rate's
/// period would not fit a `Duration`).
const RATE_RANGE_HZ: std::ops::RangeInclusive<f64> = 0.01..=1000.0;

impl SyntheticRobotConfig {
    /// Checks the rate and image size before anything is published.
    pub fn validate(&self) -> Result<(), NodeError> {
        if !RATE_RANGE_HZ.contains(&self.rate_hz) || self.width == 0 || self.height == 0 {
            return Err(NodeError::config(format!(
                "rate must be within [{}, {}] Hz and the image non-empty, got {} Hz, {}x{}",
                RATE_RANGE_HZ.start(),
                RATE_RANGE_HZ.end(),
                self.rate_hz,
                self.width,
                self.height
            )));
        }
        Ok(())
    }
}

/// Publishes until `duration` has passed. Returns the frames published.
pub fn run_synthetic_robot(node: &mut RosNode, cfg: &SyntheticRobotConfig) -> Result<u64, NodeError> {
    cfg.validate()?;
    let cam = node.create_publisher::<Image>(&cfg.image_topic, Qos::sensor_data())?;
    let joints = node.create_publisher::<JointState>(&cfg.joint_state_topic, Qos::default_profile())?;
    let instr = node.create_publisher::<StringMsg>(&cfg.instruction_topic, Qos::default_profile())?;
    let clock = node.clock();
    let period = Duration::from_secs_f64(1.0 / cfg.rate_hz);
    let start = Instant::now();
    let (mut next, mut next_instr, mut frames) = (start, start, 0u64);
    while start.elapsed() < cfg.duration {
        let header = Header {
            stamp: clock.now(),
            frame_id: "camera".into(),
        };
        cam.publish(Image {
            header: header.clone(),
            height: cfg.height,
            width: cfg.width,
            encoding: "rgb8".into(),
            is_bigendian: 0,
            step: cfg.width * 3,
            data: test_pattern(cfg.width, cfg.height, frames as u32),
        })?;
        if !cfg.joint_names.is_empty() {
            joints.publish(JointState {
                header,
                name: cfg.joint_names.clone(),
                position: vec![cfg.joint_value; cfg.joint_names.len()],
                ..Default::default()
            })?;
        }
        if let Some(text) = &cfg.instruction {
            if Instant::now() >= next_instr {
                instr.publish(StringMsg { data: text.clone() })?;
                next_instr += Duration::from_secs(1);
            }
        }
        frames += 1;
        next += period;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pattern_moves() {
        let a = super::test_pattern(8, 4, 0);
        assert_eq!(a.len(), 8 * 4 * 3);
        assert_ne!(a, super::test_pattern(8, 4, 1));
    }

    #[test]
    fn extreme_rates_are_refused() {
        for rate_hz in [1e-300, 0.0, -1.0, f64::NAN, 1e300] {
            let cfg = super::SyntheticRobotConfig {
                rate_hz,
                ..Default::default()
            };
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("rate must be within"), "{rate_hz}: {e}");
        }
        super::SyntheticRobotConfig::default().validate().unwrap();
    }
}
