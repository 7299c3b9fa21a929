//! The bounded hand-over between the input threads and the control loop.
//!
//! Every input kind has its own bounded place, so a flood of one kind can neither grow memory nor
//! delay another: e-stop changes are kept in order (never dropped) and taken first; joint states
//! and instructions are latest-wins (replaced ones are counted); goals and cancels are kept in
//! order (the action thread waits for room rather than drop one); camera frames live in their own
//! one-frame inbox and only leave their transport latency here.
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::ros::msgs::sensor_msgs::JointState;

use crate::node::wiring::ros_io::ActionEvent;

/// Joint-state messages kept between two wake-ups of the loop (older ones are replaced).
const JOINT_STATES_KEPT: usize = 8;
/// Goal and cancel requests kept before the action thread waits for room.
const ACTIONS_KEPT: usize = 256;
/// How long the action thread waits for room before giving the request up (logged).
const ACTION_ROOM_WAIT: Duration = Duration::from_secs(2);
/// Transport latencies kept for diagnostics between two wake-ups.
const LATENCIES_KEPT: usize = 64;
/// E-stop changes kept; beyond that the queue collapses to "engaged, then the newest value".
const ESTOP_CHANGES_KEPT: usize = 16;

/// Everything that arrived since the loop last looked, in the order the loop handles it.
#[derive(Debug, Default)]
pub struct Batch {
    /// E-stop values in arrival order, consecutive repeats collapsed (handled first).
    pub estop: Vec<bool>,
    /// Wall time of the newest `false` on the e-stop topic (the dead-man heartbeat).
    pub heartbeat: Option<Instant>,
    pub joints: Vec<(JointState, Instant)>,
    pub instruction: Option<String>,
    pub actions: Vec<ActionEvent>,
    /// A camera frame arrived (it waits in the frame inbox), with transport latencies.
    pub frame: bool,
    pub transport: Vec<Duration>,
    /// The inference worker has a result.
    pub inferred: bool,
    /// Joint states and instructions replaced before the loop took them.
    pub replaced: u64,
}

impl Batch {
    /// True if nothing arrived.
    pub fn is_empty(&self) -> bool {
        self.estop.is_empty()
            && self.heartbeat.is_none()
            && self.joints.is_empty()
            && self.instruction.is_none()
            && self.actions.is_empty()
            && !self.frame
            && !self.inferred
    }
}

/// The queue: inputs put, the control loop waits and takes everything at once.
#[derive(Debug, Default)]
pub struct EventQueue {
    pending: Mutex<Batch>,
    wake: Condvar,
    /// Signals the action thread that room was made.
    room: Condvar,
}

impl EventQueue {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        // Every field stays consistent under a panic elsewhere: take it as it is.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put(&self, f: impl FnOnce(&mut Batch)) {
        f(&mut self.lock());
        self.wake.notify_one();
    }

    /// An e-stop message (`true`: engage) that arrived at wall time `at`.
    pub fn estop(&self, engaged: bool, at: Instant) {
        self.put(|b| {
            if !engaged {
                b.heartbeat = Some(at);
            }
            if b.estop.last() == Some(&engaged) {
                return;
            }
            if b.estop.len() >= ESTOP_CHANGES_KEPT {
                // Toggled faster than the loop runs: keep that it was engaged, and where it is now.
                b.estop = vec![true];
                if !engaged {
                    b.estop.push(false);
                }
                return;
            }
            b.estop.push(engaged);
        });
    }

    /// A joint state (latest wins beyond [`JOINT_STATES_KEPT`]).
    pub fn joints(&self, js: JointState, at: Instant) {
        self.put(|b| {
            if b.joints.len() >= JOINT_STATES_KEPT {
                b.joints.remove(0);
                b.replaced += 1;
            }
            b.joints.push((js, at));
        });
    }

    /// An instruction on the topic (latest wins).
    pub fn instruction(&self, text: String) {
        self.put(|b| {
            if b.instruction.replace(text).is_some() {
                b.replaced += 1;
            }
        });
    }

    /// A camera frame is in the inbox.
    pub fn frame(&self, transport: Option<Duration>) {
        self.put(|b| {
            b.frame = true;
            if let Some(d) = transport.filter(|_| b.transport.len() < LATENCIES_KEPT) {
                b.transport.push(d);
            }
        });
    }

    /// The worker finished an inference.
    pub fn inferred(&self) {
        self.put(|b| b.inferred = true);
    }

    /// A goal or cancel request; waits (bounded) while [`ACTIONS_KEPT`] are pending. False if it
    /// could not be queued.
    pub fn action(&self, ev: ActionEvent) -> bool {
        let guard = self.lock();
        let (mut b, timeout) = self
            .room
            .wait_timeout_while(guard, ACTION_ROOM_WAIT, |b| b.actions.len() >= ACTIONS_KEPT)
            .unwrap_or_else(PoisonError::into_inner);
        if timeout.timed_out() && b.actions.len() >= ACTIONS_KEPT {
            return false;
        }
        b.actions.push(ev);
        drop(b);
        self.wake.notify_one();
        true
    }

    /// Waits up to `timeout` for anything, then takes everything that arrived.
    pub fn wait(&self, timeout: Duration) -> Batch {
        let guard = self.lock();
        let (mut b, _) = self
            .wake
            .wait_timeout_while(guard, timeout, |b| b.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        let batch = std::mem::take(&mut *b);
        drop(b);
        self.room.notify_all();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estop_changes_are_kept_in_order_and_repeats_collapse() {
        let q = EventQueue::default();
        let t = Instant::now();
        for v in [false, false, true, true, false] {
            q.estop(v, t);
        }
        let b = q.wait(Duration::ZERO);
        assert_eq!(b.estop, vec![false, true, false]);
        assert_eq!(b.heartbeat, Some(t));
        assert!(q.wait(Duration::ZERO).is_empty());
    }

    #[test]
    fn an_engage_is_never_lost_when_toggled_faster_than_the_loop() {
        let q = EventQueue::default();
        let t = Instant::now();
        for k in 0..1000 {
            q.estop(k % 2 == 0, t);
        }
        let b = q.wait(Duration::ZERO);
        assert!(b.estop.len() <= ESTOP_CHANGES_KEPT, "{:?}", b.estop);
        assert!(b.estop.contains(&true));
        assert_eq!(b.estop.last(), Some(&false), "ends where the topic ends");
    }

    #[test]
    fn joint_states_and_instructions_are_bounded_latest_wins() {
        let q = EventQueue::default();
        let t = Instant::now();
        for k in 0..100 {
            q.joints(
                JointState {
                    position: vec![k as f64],
                    ..Default::default()
                },
                t,
            );
            q.instruction(format!("task {k}"));
        }
        let b = q.wait(Duration::ZERO);
        assert_eq!(b.joints.len(), JOINT_STATES_KEPT);
        assert_eq!(b.joints.last().map(|(j, _)| j.position[0]), Some(99.0));
        assert_eq!(b.instruction.as_deref(), Some("task 99"));
        assert_eq!(b.replaced, (100 - JOINT_STATES_KEPT as u64) + 99);
    }

    #[test]
    fn actions_wait_for_room_and_are_never_dropped_silently() {
        let q = std::sync::Arc::new(EventQueue::default());
        for k in 0..ACTIONS_KEPT {
            assert!(q.action(ActionEvent::Cancel {
                key: k as u64,
                goals: vec![]
            }));
        }
        let q2 = std::sync::Arc::clone(&q);
        let pusher = std::thread::spawn(move || {
            q2.action(ActionEvent::Cancel {
                key: 9999,
                goals: vec![],
            })
        });
        std::thread::sleep(Duration::from_millis(50));
        let first = q.wait(Duration::ZERO);
        assert_eq!(first.actions.len(), ACTIONS_KEPT);
        assert!(pusher.join().unwrap(), "queued once room was made");
        assert_eq!(q.wait(Duration::ZERO).actions.len(), 1);
    }

    #[test]
    fn wait_returns_at_once_when_something_arrives() {
        let q = std::sync::Arc::new(EventQueue::default());
        let q2 = std::sync::Arc::clone(&q);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            q2.estop(true, Instant::now());
        });
        let start = Instant::now();
        let b = q.wait(Duration::from_secs(10));
        assert_eq!(b.estop, vec![true]);
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
    }
}
