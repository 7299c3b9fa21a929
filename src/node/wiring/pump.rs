//! The input thread: takes camera frames, joint states, e-stop and instruction messages from the
//! transport as they arrive and hands them to the control loop at once. Frames go into the latest-
//! frame inbox (an unused older frame is dropped, never queued); everything else goes through the
//! bounded [`EventQueue`], where the e-stop has a place of its own that nothing can crowd out.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ros::msgs::sensor_msgs::{CompressedImage, Image, JointState};
use crate::ros::msgs::std_msgs::{Bool, StringMsg};
use crate::ros::msgs::RosMessage;
use crate::ros::RosSubscription;

use crate::node::control::core::{put_frame, FrameInbox};
use crate::node::control::timebase::ControlClock;
use crate::node::error::NodeError;
use crate::node::input::CameraFrame;
use crate::node::wiring::events::EventQueue;

/// Every how many receive errors of one subscription a warning is logged (the first always is).
const ERROR_LOG_EVERY: u64 = 100;

/// Camera input (raw or compressed).
pub enum CameraSub {
    Raw(RosSubscription<Image>),
    Compressed(RosSubscription<CompressedImage>),
}

/// The subscriptions the input thread serves.
pub struct Inputs {
    pub camera: CameraSub,
    pub joints: Option<RosSubscription<JointState>>,
    /// The e-stop topic, read by more than one reader (see [`crate::node::wiring::driver::NodeIo`]).
    pub estop: Vec<RosSubscription<Bool>>,
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

/// Receives from `sub` for the life of the process; `f` hands each message over.
fn serve<T: RosMessage + 'static>(sub: RosSubscription<T>, mut f: impl FnMut(T) + Send + 'static) -> Task {
    Box::pin(async move {
        let mut errors = 0u64;
        loop {
            match sub.recv().await {
                Ok(m) => f(m),
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

/// Runs `tasks` on a thread of its own (SCHED_FIFO at `realtime` when > 0).
fn spawn_thread(name: &str, tasks: Vec<Task>, realtime: i32) -> Result<(), NodeError> {
    let label = name.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if realtime > 0 {
                if let Err(e) = crate::node::priority::realtime_current_thread(realtime) {
                    tracing::warn!("{label}: {e}");
                }
            }
            futures::executor::block_on(futures::future::join_all(tasks))
        })
        .map(|_| ())
        .map_err(|e| NodeError::Thread(format!("{name}: {e}")))
}

/// Starts the input thread, and the e-stop's own thread (an e-stop is never read behind a camera
/// frame being deserialised). `realtime` > 0 runs both under SCHED_FIFO at that priority.
pub fn start(
    inputs: Inputs,
    inbox: FrameInbox,
    queue: Arc<EventQueue>,
    clock: ControlClock,
    realtime: i32,
) -> Result<(), NodeError> {
    let sim = clock.is_simulated();
    let mut tasks: Vec<Task> = Vec::new();
    let frame_clock = clock.clone();
    let q = Arc::clone(&queue);
    let frame = move |f: CameraFrame| {
        // Header stamps are comparable with the system clock only when both are wall time.
        let transport = if sim { None } else { transport_latency(&f) };
        put_frame(&inbox, f, frame_clock.now());
        q.frame(transport);
    };
    match inputs.camera {
        CameraSub::Raw(s) => tasks.push(serve(s, move |m| frame(CameraFrame::Raw(m)))),
        CameraSub::Compressed(s) => tasks.push(serve(s, move |m| frame(CameraFrame::Compressed(m)))),
    }
    if let Some(s) = inputs.joints {
        let (clock, q) = (clock.clone(), Arc::clone(&queue));
        tasks.push(serve(s, move |js| q.joints(js, clock.now())));
    }
    let estop: Vec<Task> = inputs
        .estop
        .into_iter()
        .map(|s| {
            let q = Arc::clone(&queue);
            serve(s, move |b: Bool| q.estop(b.data, Instant::now()))
        })
        .collect();
    if let Some(s) = inputs.instruction {
        let q = Arc::clone(&queue);
        tasks.push(serve(s, move |m: StringMsg| q.instruction(m.data)));
    }
    spawn_thread("univla-estop", estop, realtime)?;
    spawn_thread("univla-input", tasks, realtime)
}
