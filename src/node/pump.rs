//! The input thread: takes camera frames, joint states, e-stop and instruction messages from the
//! transport as they arrive and hands them to the control loop at once. Frames go into the latest-
//! frame inbox (an unused older frame is dropped, never queued); everything else is a small event.
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::ros::msgs::sensor_msgs::{CompressedImage, Image, JointState};
use crate::ros::msgs::std_msgs::{Bool, StringMsg};
use crate::ros::msgs::RosMessage;
use crate::ros::RosSubscription;

use super::core::{put_frame, FrameInbox};
use super::error::NodeError;
use super::input::CameraFrame;
use super::ros_io::ActionEvent;
use super::timebase::ControlClock;

/// Every how many receive errors of one subscription a warning is logged (the first always is).
const ERROR_LOG_EVERY: u64 = 100;

/// What wakes the control loop.
#[derive(Debug)]
pub enum Event {
    /// A camera frame is in the inbox; `transport` is its header stamp → arrival (wall clock).
    Frame {
        transport: Option<Duration>,
    },
    Joints(JointState, std::time::Instant),
    Estop(bool),
    Instruction(String),
    Action(ActionEvent),
    /// The inference worker has a result.
    Inferred,
}

/// Camera input (raw or compressed).
pub enum CameraSub {
    Raw(RosSubscription<Image>),
    Compressed(RosSubscription<CompressedImage>),
}

/// The subscriptions the input thread serves.
pub struct Inputs {
    pub camera: CameraSub,
    pub joints: Option<RosSubscription<JointState>>,
    pub estop: RosSubscription<Bool>,
    pub instruction: Option<RosSubscription<StringMsg>>,
}

/// Camera stamp → now on the system clock, when the frame is stamped.
pub fn transport_latency(f: &CameraFrame) -> Option<Duration> {
    let stamp = match f {
        CameraFrame::Raw(m) => m.header.stamp,
        CameraFrame::Compressed(m) => m.header.stamp,
        CameraFrame::Decoded(_) => return None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let stamp = Duration::new(u64::try_from(stamp.sec).ok()?, stamp.nanosec);
    (stamp > Duration::ZERO).then(|| now.checked_sub(stamp)).flatten()
}

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Receives from `sub` until the control loop has gone; `f` turns a message into an event (or
/// handles it itself and returns None).
fn serve<T: RosMessage + 'static>(
    sub: RosSubscription<T>,
    tx: Sender<Event>,
    mut f: impl FnMut(T) -> Option<Event> + Send + 'static,
) -> Task {
    Box::pin(async move {
        let mut errors = 0u64;
        loop {
            match sub.recv().await {
                Ok(m) => {
                    if let Some(ev) = f(m) {
                        if tx.send(ev).is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    if errors.is_multiple_of(ERROR_LOG_EVERY) {
                        tracing::warn!("{} ({} receive errors so far)", e, errors + 1);
                    }
                    errors += 1;
                }
            }
        }
    })
}

/// Starts the input thread.
/// `realtime` > 0 runs it under SCHED_FIFO at that priority.
pub fn start(
    inputs: Inputs,
    inbox: FrameInbox,
    tx: Sender<Event>,
    clock: ControlClock,
    realtime: i32,
) -> Result<(), NodeError> {
    let sim = clock.is_simulated();
    let mut tasks: Vec<Task> = Vec::new();
    let frame_clock = clock.clone();
    let frame = move |f: CameraFrame| {
        // Header stamps are comparable with the system clock only when both are wall time.
        let transport = if sim { None } else { transport_latency(&f) };
        put_frame(&inbox, f, frame_clock.now());
        Some(Event::Frame { transport })
    };
    match inputs.camera {
        CameraSub::Raw(s) => tasks.push(serve(s, tx.clone(), move |m| frame(CameraFrame::Raw(m)))),
        CameraSub::Compressed(s) => tasks.push(serve(s, tx.clone(), move |m| frame(CameraFrame::Compressed(m)))),
    }
    if let Some(s) = inputs.joints {
        let clock = clock.clone();
        tasks.push(serve(s, tx.clone(), move |js| Some(Event::Joints(js, clock.now()))));
    }
    tasks.push(serve(inputs.estop, tx.clone(), |b: Bool| Some(Event::Estop(b.data))));
    if let Some(s) = inputs.instruction {
        tasks.push(serve(s, tx, |m: StringMsg| Some(Event::Instruction(m.data))));
    }
    std::thread::Builder::new()
        .name("univla-input".into())
        .spawn(move || {
            if realtime > 0 {
                if let Err(e) = super::priority::realtime_current_thread(realtime) {
                    tracing::warn!("input thread: {e}");
                }
            }
            futures::executor::block_on(futures::future::join_all(tasks))
        })
        .map(|_| ())
        .map_err(|e| NodeError::Thread(format!("univla-input: {e}")))
}
