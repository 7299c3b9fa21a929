//! Unit tests of the arm core with a stand-in policy (no DDS, no model).
use super::*;
use crate::node::control::safety::Violation;
use crate::node::control::stop::STOP_REPEATS;
use crate::node::wiring::worker::tests::FakePolicy;
use crate::runtime::postprocess::Preset;
use crate::runtime::preprocess::RgbImage;

const WAIT: Duration = Duration::from_secs(10);
const PERIOD: Duration = Duration::from_millis(100);

fn settings(kind: ArmKind, dim: usize) -> ArmSettings {
    ArmSettings {
        kind,
        joint_names: (0..dim).map(|i| format!("j{i}")).collect(),
        require_joints: true,
        needs_proprio: false,
        period: PERIOD,
        image_timeout: Duration::from_millis(500),
        joint_timeout: Duration::from_millis(500),
        max_instruction_chars: 1024,
        dry_run: false,
        chunk_mode: ChunkMode::OpenLoop { replan_every: None },
        alignment: Alignment::Measured,
        action_dim: dim,
        default_ensemble: 2,
        preview: false,
        inference_timeout: Duration::from_secs(5),
        max_image_pixels: crate::runtime::preprocess::DEFAULT_MAX_PIXELS,
    }
}

fn joint_core(policy: FakePolicy, mode: Violation) -> ArmCore {
    let dim = policy.dim;
    let limits = JointLimits::new(
        Some(vec![-1.0; dim]),
        Some(vec![1.0; dim]),
        Some(vec![10.0; dim]),
        Some(vec![0.5; dim]),
        dim,
        mode,
    )
    .unwrap();
    let post = PostProcessor::new(Preset::RealWorld, None, None).unwrap();
    ArmCore::new(
        settings(ArmKind::Joints(limits), dim),
        post,
        InferenceWorker::spawn(policy).unwrap(),
    )
}

fn frame() -> CameraFrame {
    CameraFrame::Decoded(RgbImage::filled(8, 8, [10, 20, 30]).unwrap())
}

fn js(dim: usize, v: f64) -> JointState {
    JointState {
        name: (0..dim).map(|i| format!("j{i}")).collect(),
        position: vec![v; dim],
        ..Default::default()
    }
}

fn goal(instruction: &str) -> GoalSpec {
    GoalSpec {
        instruction: instruction.into(),
        ..Default::default()
    }
}

/// Feeds fresh inputs and ticks until a command or an end appears (bounded).
fn run_until_command(core: &mut ArmCore, t: &mut Instant, dim: usize) -> Tick {
    for _ in 0..20 {
        *t += PERIOD;
        core.on_image(frame(), *t);
        core.on_joint_state(&js(dim, 0.0), *t).unwrap();
        let tick = core.tick(*t);
        if tick.command.is_some() || tick.ended.is_some() {
            return tick;
        }
        assert!(core.wait_worker(WAIT));
    }
    panic!("no command within 20 steps");
}

fn ready(core: &mut ArmCore, t: Instant, dim: usize) {
    core.on_image(frame(), t);
    core.on_joint_state(&js(dim, 0.0), t).unwrap();
}

#[test]
fn goals_are_rejected_with_reasons_when_not_ready() {
    let mut core = joint_core(FakePolicy::new(2, 4, 0.1), Violation::Clamp);
    let t = Instant::now();
    assert_eq!(
        core.start_goal(goal("pick"), t).unwrap_err(),
        "no camera image received yet"
    );
    core.on_image(frame(), t);
    let e = core.start_goal(goal("pick"), t).unwrap_err();
    assert!(e.contains("joint state"), "{e}");
    core.on_joint_state(&js(2, 0.0), t).unwrap();
    assert_eq!(core.start_goal(goal("  "), t).unwrap_err(), "empty instruction");
    let long = "x".repeat(10 * 1024);
    assert!(core
        .start_goal(goal(&long), t)
        .unwrap_err()
        .contains("10240 characters"));
    let mut g = goal("pick");
    g.mode = "fast".into();
    assert!(core.start_goal(g, t).unwrap_err().contains("unknown mode"));
    let late = t + Duration::from_secs(2);
    assert!(core.start_goal(goal("pick"), late).unwrap_err().contains("stale"));
    core.set_estop(Some("e-stop engaged on /estop"), t);
    assert!(core.start_goal(goal("pick"), t).unwrap_err().contains("emergency stop"));
    core.set_estop(None, t);
    assert!(core.start_goal(goal("pick"), t).is_ok());
    assert_eq!(core.counters.goals_rejected, 7);
}

#[test]
fn runs_chunks_with_feedback_and_step_limit() {
    let mut core = joint_core(FakePolicy::new(2, 4, 0.1), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    let mut g = goal("pick");
    g.max_steps = 3;
    let started = core.start_goal(g, t).unwrap();
    let epoch = started.epoch;
    assert!(started.preempted.is_none());
    assert_eq!(started.tick.command, None, "nothing to stop");
    let tick = run_until_command(&mut core, &mut t, 2);
    match tick.command {
        Some(ArmCommand::Joints(points)) => {
            assert!(!points.is_empty() && points.len() <= 4);
            assert_eq!(points[0], vec![0.1, 0.1]);
        }
        other => panic!("expected joints, got {other:?}"),
    }
    let fb = tick.feedback.unwrap();
    assert_eq!((fb.epoch, fb.step), (epoch, 1));
    assert_eq!(fb.latent_ids, vec![32001, 32002, 32003, 32004]);
    assert_eq!(fb.commanded, vec![0.1, 0.1]);
    let mut end = None;
    for _ in 0..20 {
        let tick = run_until_command(&mut core, &mut t, 2);
        if let Some(e) = tick.ended {
            assert_eq!(
                tick.command,
                Some(ArmCommand::Hold(vec![0.0, 0.0])),
                "held at the measured position"
            );
            end = Some(e);
            break;
        }
    }
    let end = end.unwrap();
    assert_eq!(
        (end.status, end.outcome, end.steps),
        (GoalOutcome::Succeeded, ExecuteResult::STEP_LIMIT, 3)
    );
    assert_eq!(core.state(), &NodeState::Idle);
}

#[test]
fn preemption_aborts_old_goal_and_cancel_holds() {
    let mut core = joint_core(FakePolicy::new(2, 4, 0.1), Violation::Clamp);
    let t = Instant::now();
    ready(&mut core, t, 2);
    let e1 = core.start_goal(goal("pick"), t).unwrap().epoch;
    let started = core.start_goal(goal("place"), t).unwrap();
    let e2 = started.epoch;
    // The preempted motion stops at once: a hold at the measured position.
    assert_eq!(started.tick.command, Some(ArmCommand::Hold(vec![0.0, 0.0])));
    let pre = started.preempted.unwrap();
    assert_eq!(
        (pre.epoch, pre.status, pre.outcome),
        (e1, GoalOutcome::Aborted, ExecuteResult::PREEMPTED)
    );
    assert!(pre.reason.contains("preempted"));
    let stale = core.cancel(e1, t);
    assert!(
        stale.ended.is_none() && stale.command.is_none(),
        "the old goal is already over"
    );
    let c = core.cancel(e2, t);
    assert_eq!(c.command, Some(ArmCommand::Hold(vec![0.0, 0.0])), "cancel holds");
    let c = c.ended.unwrap();
    assert_eq!((c.status, c.outcome), (GoalOutcome::Canceled, ExecuteResult::CANCELED));
    assert_eq!(core.state(), &NodeState::Idle);
}

#[test]
fn nan_output_aborts_and_holds() {
    let mut core = joint_core(FakePolicy::new(2, 4, f64::NAN), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    let tick = run_until_command(&mut core, &mut t, 2);
    let end = tick.ended.expect("goal must end");
    assert_eq!(end.status, GoalOutcome::Aborted);
    assert!(end.reason.contains("NaN"), "{}", end.reason);
    assert_eq!(tick.command, Some(ArmCommand::Hold(vec![0.0, 0.0])));
    assert!(core.counters.last_error.contains("NaN"));
    assert!(
        core.counters.fault.as_deref().is_some_and(|f| f.contains("NaN")),
        "a fault: ERROR"
    );
}

#[test]
fn out_of_range_output_aborts() {
    let mut core = joint_core(FakePolicy::new(2, 4, 50.0), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    let tick = run_until_command(&mut core, &mut t, 2);
    let end = tick.ended.expect("goal must end");
    assert!(end.reason.contains("far outside"), "{}", end.reason);
}

#[test]
fn limits_clamp_or_refuse_and_are_counted() {
    // 1.5 is beyond the position limit 1.0 (and beyond max_step 0.5 from 0.0).
    let mut core = joint_core(FakePolicy::new(2, 4, 1.5), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    let tick = run_until_command(&mut core, &mut t, 2);
    match tick.command {
        Some(ArmCommand::Joints(p)) => assert_eq!(p[0], vec![0.5, 0.5]),
        other => panic!("{other:?}"),
    }
    assert!(core.counters.clamp_events >= 4);

    let mut core = joint_core(FakePolicy::new(2, 4, 1.5), Violation::Refuse);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    let tick = run_until_command(&mut core, &mut t, 2);
    assert_eq!(tick.command, Some(ArmCommand::Hold(vec![0.0, 0.0])));
    assert!(tick.ended.is_none(), "a refusal holds but keeps the goal");
    assert_eq!(core.counters.refusals, 1);
    assert!(matches!(core.state(), NodeState::Holding(r) if r.contains("refused")));
}

#[test]
fn stale_camera_and_joints_and_estop_hold() {
    let mut core = joint_core(FakePolicy::new(2, 8, 0.1), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    run_until_command(&mut core, &mut t, 2);
    // Camera silent for 1 s: hold at the measured joint positions, repeated on the next steps.
    t += Duration::from_secs(1);
    core.on_joint_state(&js(2, 0.2), t).unwrap();
    let tick = core.tick(t);
    assert_eq!(tick.command, Some(ArmCommand::Hold(vec![0.2, 0.2])));
    assert!(matches!(core.state(), NodeState::Holding(r) if r.contains("camera stale")));
    // Repeated once each earlier hold has settled (two settle times apart), then quiet.
    let mut repeats = 0;
    for _ in 0..4 * STOP_REPEATS {
        t += PERIOD;
        core.on_joint_state(&js(2, 0.2), t).unwrap();
        if let Some(c) = core.tick(t).command {
            assert_eq!(c, ArmCommand::Hold(vec![0.2, 0.2]));
            repeats += 1;
        }
    }
    assert_eq!(repeats, STOP_REPEATS);
    // Joint states silent as well: still holding (no new stop); the hold it would send now is the
    // last commanded point, never an empty trajectory.
    t += Duration::from_secs(1);
    core.on_image(frame(), t);
    let tick = core.tick(t);
    assert!(matches!(core.state(), NodeState::Holding(r) if r.contains("joint states stale")));
    assert_eq!(tick.command, None, "already holding");
    assert_eq!(core.stop_command(t), Some(ArmCommand::Hold(vec![0.2, 0.2])));
    // Fresh inputs resume.
    let tick = run_until_command(&mut core, &mut t, 2);
    assert!(matches!(tick.command, Some(ArmCommand::Joints(_))));
    // E-stop holds at once (no tick needed) until released, and refuses goals meanwhile.
    t += PERIOD;
    ready(&mut core, t, 2);
    let tick = core.set_estop(Some("e-stop engaged on /estop"), t);
    assert_eq!(tick.command, Some(ArmCommand::Hold(vec![0.0, 0.0])));
    for _ in 0..STOP_REPEATS + 2 {
        t += PERIOD;
        ready(&mut core, t, 2);
        let c = core.tick(t).command;
        assert!(c.is_none() || c == Some(ArmCommand::Hold(vec![0.0, 0.0])), "{c:?}");
        assert!(matches!(core.state(), NodeState::EStopped(r) if r.contains("e-stop")));
    }
    core.set_estop(None, t);
    let tick = run_until_command(&mut core, &mut t, 2);
    assert!(matches!(tick.command, Some(ArmCommand::Joints(_))));
    // Camera stale (joints then stale while already holding), then the e-stop.
    assert_eq!(core.counters.holds, 2);
}

#[test]
fn a_stale_joint_state_holds_at_the_last_commanded_point() {
    let mut core = joint_core(FakePolicy::new(2, 8, 0.1), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    let tick = run_until_command(&mut core, &mut t, 2);
    let Some(ArmCommand::Joints(points)) = tick.command else {
        panic!("{tick:?}")
    };
    // Only the camera keeps coming: the joints go stale and the hold is the point last sent.
    t += Duration::from_secs(1);
    core.on_image(frame(), t);
    let tick = core.supervise(t);
    assert_eq!(tick.command, Some(ArmCommand::Hold(points[0].clone())));
    assert!(matches!(core.state(), NodeState::Holding(r) if r.contains("joint states stale")));
}

#[test]
fn a_stalled_clock_does_not_disable_the_input_watchdogs() {
    let mut core = joint_core(FakePolicy::new(2, 8, 0.1), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    run_until_command(&mut core, &mut t, 2);
    assert_eq!(core.state(), &NodeState::Running);
    // The control clock stands still at `t` (a paused /clock) while wall time passes without a
    // camera image or joint state.
    std::thread::sleep(Duration::from_millis(600));
    let tick = core.supervise(t);
    assert!(matches!(tick.command, Some(ArmCommand::Hold(_))), "{:?}", tick.command);
    assert!(
        matches!(core.state(), NodeState::Holding(r) if r.contains("wall time")),
        "{:?}",
        core.state()
    );
}

#[test]
fn bad_frames_hold_and_are_reported() {
    let mut core = joint_core(FakePolicy::new(2, 4, 0.1), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    let bad = CameraFrame::Raw(crate::ros::msgs::sensor_msgs::Image {
        width: 8,
        height: 8,
        encoding: "16UC1".into(),
        step: 16,
        data: vec![0; 128],
        ..Default::default()
    });
    t += PERIOD;
    core.on_image(bad, t);
    core.on_joint_state(&js(2, 0.0), t).unwrap();
    core.tick(t);
    assert!(core.wait_worker(WAIT));
    t += PERIOD;
    core.on_joint_state(&js(2, 0.0), t).unwrap();
    let tick = core.tick(t);
    assert!(matches!(tick.command, Some(ArmCommand::Hold(_))));
    assert_eq!(core.counters.bad_frames, 1);
    assert!(
        core.counters.last_error.contains("16UC1"),
        "{}",
        core.counters.last_error
    );
    assert!(core.goal_epoch().is_some(), "the goal waits for good frames");
}

#[test]
fn unknown_joint_names_are_reported_and_hold() {
    let mut core = joint_core(FakePolicy::new(2, 4, 0.1), Violation::Clamp);
    let t = Instant::now();
    core.on_image(frame(), t);
    let wrong = JointState {
        name: vec!["shoulder".into(), "elbow".into()],
        position: vec![0.0, 0.0],
        ..Default::default()
    };
    assert!(core
        .on_joint_state(&wrong, t)
        .unwrap_err()
        .contains("none of the configured joints"));
    assert_eq!(core.counters.bad_joint_states, 1);
    assert!(core
        .start_goal(goal("pick"), t)
        .unwrap_err()
        .contains("no fresh joint state"));
}

#[test]
fn inference_errors_abort() {
    let mut core = joint_core(FakePolicy::new(2, 4, 0.1), Violation::Clamp);
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("fail"), t).unwrap();
    let tick = run_until_command(&mut core, &mut t, 2);
    let end = tick.ended.unwrap();
    assert!(end.reason.contains("model failed"), "{}", end.reason);
    assert_eq!(core.counters.inference_errors, 1);
}

#[test]
fn dry_run_marks_commands_not_to_actuate() {
    let dim = 2;
    let limits = JointLimits::new(
        None,
        None,
        Some(vec![10.0; dim]),
        Some(vec![1.0; dim]),
        dim,
        Violation::Clamp,
    )
    .unwrap();
    let mut s = settings(ArmKind::Joints(limits), dim);
    s.dry_run = true;
    let post = PostProcessor::new(Preset::RealWorld, None, None).unwrap();
    let mut core = ArmCore::new(s, post, InferenceWorker::spawn(FakePolicy::new(2, 4, 0.1)).unwrap());
    let mut t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    let tick = run_until_command(&mut core, &mut t, 2);
    assert!(!tick.actuate);
    assert!(tick.feedback.is_some() && tick.command.is_some());
}

#[test]
fn eef_deltas_become_pose_targets_inside_the_workspace() {
    let ws = Workspace::new([0.0, -0.5, 0.0], [0.8, 0.5, 0.45], 0.05, 0.5, Violation::Clamp).unwrap();
    let kind = ArmKind::Eef {
        workspace: ws,
        initial: [0.4, 0.0, 0.3, 0.0, 0.0, 0.0],
        translation_scale: 1.0,
        rotation_scale: 1.0,
    };
    let mut s = settings(kind, 7);
    s.require_joints = false;
    s.joint_names.clear();
    let post = PostProcessor::new(Preset::Calvin, None, None).unwrap();
    // Each row: +0.1 m on every axis (clamped to 0.05 m per step), gripper 0.1 → +1.
    let mut core = ArmCore::new(s, post, InferenceWorker::spawn(FakePolicy::new(7, 4, 0.1)).unwrap());
    let mut t = Instant::now();
    core.on_image(frame(), t);
    core.start_goal(goal("push"), t).unwrap();
    let mut tick = Tick::default();
    for _ in 0..20 {
        t += PERIOD;
        core.on_image(frame(), t);
        tick = core.tick(t);
        if tick.command.is_some() {
            break;
        }
        core.wait_worker(WAIT);
    }
    match tick.command {
        Some(ArmCommand::Pose(p)) => {
            assert_eq!(p.gripper, 1.0);
            let first = position(&p.poses[0]);
            let step = ((first[0] - 0.4).powi(2) + first[1].powi(2) + (first[2] - 0.3).powi(2)).sqrt();
            assert!((step - 0.05).abs() < 1e-9, "step {step}");
            assert!(p.poses.iter().all(|q| q.translation.z <= 0.45 + 1e-12));
        }
        other => panic!("{other:?}"),
    }
    assert!(core.counters.clamp_events > 0);
}

#[test]
fn frames_reach_the_model_and_chunks_the_robot_between_steps() {
    let mut core = joint_core(FakePolicy::new(2, 4, 0.1), Violation::Clamp);
    core.s.chunk_mode = ChunkMode::Ensemble { size: 2 };
    let t = Instant::now();
    ready(&mut core, t, 2);
    core.start_goal(goal("pick"), t).unwrap();
    // Nothing has run a step yet: a frame is submitted at once, but there is no step to stamp for.
    assert!(core.react(t).command.is_none());
    assert!(core.wait_worker(WAIT));
    let tick = core.tick(t);
    let steps_after_first = core.mode.goal().unwrap().steps;
    assert!(matches!(tick.command, Some(ArmCommand::Joints(_))));
    // A new frame between steps goes to the idle worker without waiting for the next step…
    let mid = t + PERIOD / 2;
    ready(&mut core, mid, 2);
    assert!(core.react(mid).command.is_none());
    assert!(core.worker.is_busy(), "the frame went to the model at once");
    assert!(core.wait_worker(WAIT));
    // …and its chunk goes out at once, stamped for the next step, without running a step.
    let tick = core.react(mid);
    assert!(matches!(tick.command, Some(ArmCommand::Joints(ref p)) if !p.is_empty()));
    assert_eq!(tick.starts_at, Some(t + PERIOD));
    assert!(tick.feedback.is_none());
    let trace = tick
        .trace
        .expect("the first command of a chunk carries its frame's trace");
    let sent = Instant::now();
    let parts: Duration = trace.parts(sent).iter().sum();
    assert!(parts <= trace.overhead(sent), "{parts:?} > {:?}", trace.overhead(sent));
    assert!(trace.overhead(sent) + trace.job.model <= sent - trace.job.received);
    assert_eq!(core.mode.goal().unwrap().steps, steps_after_first);
    // Under a pending hold condition nothing goes out between steps.
    core.set_estop(Some("e-stop"), mid);
    ready(&mut core, mid, 2);
    let tick = core.react(mid);
    assert!(tick.command.is_none() && !core.worker.is_busy());
}

#[test]
fn pose_targets_wait_for_the_step() {
    let post = PostProcessor::new(Preset::Calvin, None, None).unwrap();
    let workspace = Workspace::new([-1.0; 3], [1.0; 3], 0.5, 0.5, Violation::Clamp).unwrap();
    let mut s = settings(
        ArmKind::Eef {
            workspace,
            initial: [0.3, 0.0, 0.3, 0.0, 0.0, 0.0],
            translation_scale: 1.0,
            rotation_scale: 1.0,
        },
        7,
    );
    s.require_joints = false;
    let mut core = ArmCore::new(s, post, InferenceWorker::spawn(FakePolicy::new(7, 4, 0.01)).unwrap());
    let t = Instant::now();
    core.on_image(frame(), t);
    core.start_goal(goal("pick"), t).unwrap();
    core.tick(t);
    assert!(core.wait_worker(WAIT));
    let tick = core.react(t + PERIOD / 2);
    assert!(
        tick.command.is_none(),
        "untimed pose targets are not sent between steps"
    );
    let tick = core.tick(t + PERIOD);
    assert!(matches!(tick.command, Some(ArmCommand::Pose(_))));
    assert!(
        tick.trace.is_some(),
        "the trace goes with the first command of the chunk"
    );
}
