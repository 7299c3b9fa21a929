//! The real policy session as a [`ReplayPolicy`], so `univla eval-bag` replays bags through
//! exactly what the nodes run.
use crate::runtime::postprocess::{Action, NavAction};
use crate::runtime::preprocess::RgbImage;
use crate::runtime::session::Session;

use super::replay::{PolicyStep, ReplayPolicy};

/// Metres per R2R forward step and radians per turn, for comparing discrete navigation actions
/// with recorded `[linear.x, angular.z]` commands.
const NAV_FORWARD_M: f64 = 0.25;
const NAV_TURN_RAD: f64 = 15.0 * std::f64::consts::PI / 180.0;

/// An action as a flat vector in robot units: arm actions as they are; Bridge as
/// `[world_vector, rot_axangle, gripper]`; navigation as `[forward metres, turn radians]`.
pub fn action_vector(action: &Action) -> Vec<f64> {
    match action {
        Action::Arm(v) => v.clone(),
        Action::Bridge(b) => b
            .world_vector
            .iter()
            .chain(&b.rot_axangle)
            .copied()
            .chain([b.gripper])
            .collect(),
        Action::Nav(a) => match a {
            NavAction::Stop => vec![0.0, 0.0],
            NavAction::Forward => vec![NAV_FORWARD_M, 0.0],
            NavAction::TurnLeft => vec![0.0, NAV_TURN_RAD],
            NavAction::TurnRight => vec![0.0, -NAV_TURN_RAD],
        },
    }
}

impl ReplayPolicy for Session {
    fn reset(&mut self, instruction: &str) {
        Session::reset(self, instruction);
    }

    fn step(&mut self, image: &RgbImage, proprio: Option<&[f32]>) -> Result<PolicyStep, String> {
        let proprio: Option<Vec<f64>> = proprio.map(|p| p.iter().map(|&x| f64::from(x)).collect());
        let out = Session::step(self, image, proprio.as_deref()).map_err(|e| e.to_string())?;
        let post = self.policy().post_processor();
        let (latent_ids, chunk) = match &out.inference {
            Some(inf) => {
                let rows = inf
                    .chunk
                    .iter()
                    .map(|row| post.apply(row).map(|a| action_vector(&a)).map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                (inf.latent_ids.clone(), rows)
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(PolicyStep {
            latent_ids,
            action: action_vector(&out.action),
            chunk,
            inference_ms: out.timings.total().as_secs_f64() * 1e3,
        })
    }
}
