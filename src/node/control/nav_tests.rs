//! Unit tests of the navigation core with a scripted stand-in policy.
use super::*;
use crate::node::control::stop::STOP_REPEATS;
use crate::node::wiring::worker::{Inferred, PolicyBackend};
use crate::runtime::preprocess::RgbImage;

const WAIT: Duration = Duration::from_secs(10);
const PERIOD: Duration = Duration::from_millis(100);

/// Returns the scripted actions in order, then STOP.
struct Script(Vec<NavAction>, usize);

impl PolicyBackend for Script {
    fn reset(&mut self, _: &str) {
        self.1 = 0;
    }

    fn infer(&mut self, _: &RgbImage, _: Option<&[f64]>, _: bool) -> Result<Inferred, String> {
        let a = self.0.get(self.1).copied().unwrap_or(NavAction::Stop);
        self.1 += 1;
        Ok(Inferred {
            latent_ids: vec![32001; 4],
            chunk: vec![vec![0.25; 4]; 4],
            action: Action::Nav(a),
            preview: None,
        })
    }
}

fn core(script: Vec<NavAction>) -> NavCore {
    let s = NavSettings {
        profile: NavProfile {
            forward_m: 0.25,
            turn_deg: 15.0,
            linear_speed: 0.5,
            angular_speed_deg: 30.0,
            settle: Duration::ZERO,
        },
        image_timeout: Duration::from_secs(1),
        max_instruction_chars: 100,
        dry_run: false,
        max_decisions: 0,
        preview: false,
        inference_timeout: Duration::from_secs(5),
        max_image_pixels: crate::runtime::preprocess::DEFAULT_MAX_PIXELS,
    };
    NavCore::new(s, InferenceWorker::spawn(Script(script, 0)).unwrap())
}

fn frame() -> CameraFrame {
    CameraFrame::Decoded(RgbImage::filled(8, 8, [1, 2, 3]).unwrap())
}

#[test]
fn profiles_match_the_r2r_action_space() {
    let p = NavProfile {
        forward_m: 0.25,
        turn_deg: 15.0,
        linear_speed: 0.5,
        angular_speed_deg: 30.0,
        settle: Duration::ZERO,
    };
    let (v, d) = profile(NavAction::Forward, &p).unwrap();
    assert_eq!((v.linear, v.angular, d), (0.5, 0.0, Duration::from_millis(500)));
    let (v, d) = profile(NavAction::TurnLeft, &p).unwrap();
    assert!((v.angular - 30f64.to_radians()).abs() < 1e-12 && d == Duration::from_millis(500));
    // Integrated, a turn is exactly turn_deg.
    assert!((v.angular * d.as_secs_f64() - 15f64.to_radians()).abs() < 1e-12);
    assert!(profile(NavAction::TurnRight, &p).unwrap().0.angular < 0.0);
    assert!(profile(NavAction::Stop, &p).is_none());
}

/// Ticks with fresh frames, collecting velocities, until the goal ends (bounded).
fn run(core: &mut NavCore, t: &mut Instant) -> (Vec<Velocity>, Vec<NavAction>, Ended) {
    let (mut vs, mut ds) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        *t += PERIOD;
        core.on_image(frame(), *t);
        let tick = core.tick(*t);
        vs.extend(tick.command);
        ds.extend(core.take_decision());
        if let Some(e) = tick.ended {
            return (vs, ds, e);
        }
        core.wait_worker(WAIT);
    }
    panic!("goal did not end");
}

#[test]
fn actions_become_timed_twists_and_stop_succeeds() {
    let mut c = core(vec![NavAction::Forward, NavAction::TurnRight]);
    let mut t = Instant::now();
    c.on_image(frame(), t);
    c.start_goal(
        GoalSpec {
            instruction: "walk to the kitchen".into(),
            ..Default::default()
        },
        t,
    )
    .unwrap();
    let (vs, ds, end) = run(&mut c, &mut t);
    assert_eq!(ds, vec![NavAction::Forward, NavAction::TurnRight, NavAction::Stop]);
    assert_eq!(
        (end.status, end.outcome, end.steps),
        (GoalOutcome::Succeeded, ExecuteResult::SUCCEEDED, 3)
    );
    // 0.5 s of forward at 10 Hz: 5 commands at 0.5 m/s (0.25 m), then a stop.
    let fwd = vs.iter().filter(|v| v.linear == 0.5).count();
    assert_eq!(fwd, 5, "{vs:?}");
    let right = vs.iter().filter(|v| v.angular < 0.0).count();
    assert_eq!(right, 5, "{vs:?}");
    assert_eq!(vs.last(), Some(&Velocity::ZERO));
}

#[test]
fn cancel_estop_and_stale_camera_stop_the_base() {
    let mut c = core(vec![NavAction::Forward; 50]);
    let mut t = Instant::now();
    c.on_image(frame(), t);
    let spec = GoalSpec {
        instruction: "go".into(),
        ..Default::default()
    };
    let e1 = c.start_goal(spec.clone(), t).unwrap().epoch;
    let started = c.start_goal(spec.clone(), t).unwrap();
    let e2 = started.epoch;
    assert_eq!(started.preempted.unwrap().outcome, ExecuteResult::PREEMPTED);
    assert_eq!(
        started.tick.command,
        Some(Velocity::ZERO),
        "preemption stops the base at once"
    );
    let stale = c.cancel(e1, t);
    assert!(stale.ended.is_none() && stale.command.is_none());
    // Moving.
    for _ in 0..10 {
        t += PERIOD;
        c.on_image(frame(), t);
        if c.tick(t).command.is_some_and(|v| v.linear > 0.0) {
            break;
        }
        c.wait_worker(WAIT);
    }
    // The e-stop stops the base at once, and the zero is repeated on the next steps.
    assert_eq!(c.set_estop(Some("e-stop"), t).command, Some(Velocity::ZERO));
    assert!(matches!(c.state(), NodeState::EStopped(r) if r == "e-stop"));
    for k in 0..STOP_REPEATS {
        t += PERIOD;
        assert_eq!(c.tick(t).command, Some(Velocity::ZERO), "repeat {k}");
    }
    t += PERIOD;
    assert_eq!(c.tick(t).command, None, "repeated a few times, then quiet");
    c.set_estop(None, t);
    // Stale camera while planning: still holding, now for the camera.
    t += Duration::from_secs(3);
    assert_eq!(c.tick(t).command, None);
    assert!(matches!(c.state(), NodeState::Holding(r) if r.contains("camera stale")));
    // Fresh frames: it moves again.
    let mut moved = false;
    for _ in 0..10 {
        t += PERIOD;
        c.on_image(frame(), t);
        if c.tick(t).command.is_some_and(|v| v.linear > 0.0) {
            moved = true;
            break;
        }
        c.wait_worker(WAIT);
    }
    assert!(moved);
    // The stale camera continued the hold the e-stop started (released, not yet replanned).
    assert_eq!(c.counters.holds, 1);
    let tick = c.cancel(e2, t);
    assert_eq!(tick.command, Some(Velocity::ZERO));
    assert_eq!(tick.ended.unwrap().status, GoalOutcome::Canceled);
    assert_eq!(c.state(), &NodeState::Idle);
    assert!(c.start_goal(GoalSpec::default(), t).unwrap_err().contains("empty"));
}

#[test]
fn a_decision_moves_the_base_at_once() {
    let mut c = core(vec![NavAction::TurnLeft]);
    let t = Instant::now();
    c.on_image(frame(), t);
    c.start_goal(
        GoalSpec {
            instruction: "turn".into(),
            ..Default::default()
        },
        t,
    )
    .unwrap();
    // The frame goes to the model on arrival, the decision to the base on its result.
    assert!(c.react(t).command.is_none());
    assert!(c.wait_worker(WAIT));
    let tick = c.react(t);
    assert!(tick.command.is_some_and(|v| v.angular > 0.0), "{:?}", tick.command);
    assert!(tick.trace.is_some());
    assert_eq!(c.take_decision(), Some(NavAction::TurnLeft));
}
