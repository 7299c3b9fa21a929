//! The prediction bag: predicted and recorded actions, errors, latent tokens and markers on their
//! own topics, stamped with the camera frames' bag times so Foxglove/PlotJuggler overlay them on
//! the recording.
use std::path::Path;

use super::metrics::latent_code;
use super::msgs::Float64MultiArray;
use super::replay::{EpisodeTrace, QueryRecord, StepRecord};
use super::writer::{McapBagWriter, WriterOptions};
use super::BagError;
use crate::ros::msgs::builtin_interfaces::Time;
use crate::ros::msgs::geometry_msgs::{Point, Pose, PoseStamped, Quaternion, Twist, TwistStamped, Vector3};
use crate::ros::msgs::sensor_msgs::JointState;
use crate::ros::msgs::std_msgs::{ColorRGBA, Header};
use crate::ros::msgs::trajectory_msgs::{JointTrajectory, JointTrajectoryPoint};
use crate::ros::msgs::univla_msgs::LatentActions;
use crate::ros::msgs::visualization_msgs::{Marker, MarkerArray};
use crate::ros::msgs::RosMessage;

/// Topic prefix of everything the evaluator writes.
pub const PREFIX: &str = "/univla_eval";
/// Frame of the text markers.
const MARKER_FRAME: &str = "base_link";

fn header(t: i64) -> Header {
    Header {
        stamp: Time::from_nanos(t),
        frame_id: String::new(),
    }
}

fn vector_msg(names: &[String], t: i64, v: &[f64]) -> JointState {
    JointState {
        header: header(t),
        name: names.to_vec(),
        position: v.to_vec(),
        velocity: vec![],
        effort: vec![],
    }
}

/// Quaternion of roll, pitch, yaw (static x-y-z).
fn rpy_to_quaternion(r: f64, p: f64, y: f64) -> Quaternion {
    let (sr, cr) = (r / 2.0).sin_cos();
    let (sp, cp) = (p / 2.0).sin_cos();
    let (sy, cy) = (y / 2.0).sin_cos();
    Quaternion {
        x: sr * cp * cy - cr * sp * sy,
        y: cr * sp * cy + sr * cp * sy,
        z: cr * cp * sy - sr * sp * cy,
        w: cr * cp * cy + sr * sp * sy,
    }
}

/// Writes the predicted command in the recorded command's type on `<prefix>/command`.
fn write_command(w: &mut McapBagWriter, trace: &EpisodeTrace, s: &StepRecord) -> Result<(), BagError> {
    let topic = format!("{PREFIX}/command");
    let a = &s.predicted;
    let at = |i: usize| a.get(i).copied().unwrap_or(0.0);
    let ty = trace.command_type.as_str();
    if ty == JointTrajectory::ros_type() {
        let msg = JointTrajectory {
            header: header(s.time_ns),
            joint_names: trace.dim_names.clone(),
            points: vec![JointTrajectoryPoint {
                positions: a.clone(),
                ..Default::default()
            }],
        };
        w.write(&topic, s.time_ns, &msg)
    } else if ty == JointState::ros_type() {
        w.write(&topic, s.time_ns, &vector_msg(&trace.dim_names, s.time_ns, a))
    } else if ty == Twist::ros_type() || ty == TwistStamped::ros_type() {
        let twist = Twist {
            linear: Vector3 {
                x: at(0),
                ..Default::default()
            },
            angular: Vector3 {
                z: at(1),
                ..Default::default()
            },
        };
        if ty == Twist::ros_type() {
            w.write(&topic, s.time_ns, &twist)
        } else {
            let msg = TwistStamped {
                header: header(s.time_ns),
                twist,
            };
            w.write(&topic, s.time_ns, &msg)
        }
    } else if ty == PoseStamped::ros_type() {
        let msg = PoseStamped {
            header: header(s.time_ns),
            pose: Pose {
                position: Point {
                    x: at(0),
                    y: at(1),
                    z: at(2),
                },
                orientation: rpy_to_quaternion(at(3), at(4), at(5)),
            },
        };
        w.write(&topic, s.time_ns, &msg)
    } else {
        w.write(&topic, s.time_ns, &Float64MultiArray::vector("action", a.clone()))
    }
}

fn latent_text(ids: &[i64]) -> String {
    ids.iter()
        .map(|&id| match latent_code(id) {
            Some(c) => format!("<ACT_{c}>"),
            None => format!("<{id}>"),
        })
        .collect()
}

fn text_marker(q: &QueryRecord) -> MarkerArray {
    let text = format!(
        "frame {}: {} ({:.0} ms)",
        q.frame,
        latent_text(&q.latent_ids),
        q.inference_ms
    );
    MarkerArray {
        markers: vec![Marker {
            header: Header {
                stamp: Time::from_nanos(q.time_ns),
                frame_id: MARKER_FRAME.into(),
            },
            ns: "univla_eval".into(),
            id: 0,
            type_: Marker::TEXT_VIEW_FACING,
            action: Marker::ADD,
            pose: Pose {
                position: Point { x: 0.0, y: 0.0, z: 1.0 },
                ..Default::default()
            },
            scale: Vector3 {
                z: 0.05,
                ..Default::default()
            },
            color: ColorRGBA {
                r: 1.0,
                g: 1.0,
                b: 1.0,
                a: 1.0,
            },
            text,
            ..Default::default()
        }],
    }
}

/// Writes the prediction bag of one episode into `dir` (a new rosbag2 directory).
pub fn write_prediction_bag(trace: &EpisodeTrace, dir: &Path) -> Result<(), BagError> {
    let mut w = McapBagWriter::create(dir, WriterOptions::default())?;
    let names = &trace.dim_names;
    for s in &trace.steps {
        let t = s.time_ns;
        w.write(&format!("{PREFIX}/predicted"), t, &vector_msg(names, t, &s.predicted))?;
        w.write(&format!("{PREFIX}/recorded"), t, &vector_msg(names, t, &s.ground_truth))?;
        let err: Vec<f64> = s.predicted.iter().zip(&s.ground_truth).map(|(p, g)| p - g).collect();
        w.write(&format!("{PREFIX}/error"), t, &vector_msg(names, t, &err))?;
        write_command(&mut w, trace, s)?;
    }
    for q in &trace.queries {
        let t = q.time_ns;
        let msg = LatentActions {
            header: header(t),
            ids: q.latent_ids.iter().map(|&i| i32::try_from(i).unwrap_or(-1)).collect(),
            tokens: latent_text(&q.latent_ids),
        };
        w.write(&format!("{PREFIX}/latent_actions"), t, &msg)?;
        w.write(&format!("{PREFIX}/markers"), t, &text_marker(q))?;
    }
    w.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::replay::quaternion_to_rpy;

    #[test]
    fn rpy_round_trip() {
        let q = rpy_to_quaternion(0.3, -0.4, 1.2);
        let rpy = quaternion_to_rpy(&q);
        for (a, b) in rpy.iter().zip([0.3, -0.4, 1.2]) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
