//! Counters the nodes report on `/diagnostics`: inference latency percentiles, control rate, frame
//! drops, safety events and the current state.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::ros::msgs::diagnostic_msgs::{DiagnosticArray, DiagnosticStatus, KeyValue};
use crate::ros::msgs::std_msgs::Header;

/// Names of the overhead's parts (`FrameTrace::parts` in the control core), in order.
pub const OVERHEAD_PARTS: [&str; 5] = ["handoff", "worker_wake", "decode", "result_wake", "publish"];

/// Latency samples kept for the percentiles.
const LATENCY_WINDOW: usize = 256;

/// The last [`LATENCY_WINDOW`] samples of a duration, in milliseconds.
#[derive(Debug, Default, Clone)]
pub struct Window(VecDeque<f64>);

impl Window {
    pub fn push(&mut self, d: Duration) {
        if self.0.len() == LATENCY_WINDOW {
            self.0.pop_front();
        }
        self.0.push_back(d.as_secs_f64() * 1e3);
    }

    /// p-th percentile in ms.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let v: Vec<f64> = self.0.iter().copied().collect();
        percentile(&v, p)
    }
}

/// Running counters of one node.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    latencies_ms: VecDeque<f64>,
    /// Camera header stamp → taken by the control loop (system clock; publisher clocks must agree).
    pub transport: Window,
    /// Work of one control-loop wake-up without the model (inputs, safety, publishing).
    pub loop_work: Window,
    /// Transport-in → command-out of a frame, without the model and without waiting for a worker
    /// busy with an older frame: the node's own overhead on the control path.
    pub overhead: Window,
    /// The overhead's parts ([`OVERHEAD_PARTS`]).
    pub overhead_parts: [Window; 5],
    ticks: u64,
    rate_mark: Option<(Instant, u64)>,
    rate_hz: f64,
    pub frames_received: u64,
    pub frames_dropped: u64,
    pub bad_frames: u64,
    pub bad_joint_states: u64,
    pub clamp_events: u64,
    pub refusals: u64,
    pub late_steps: u64,
    pub holds: u64,
    pub inferences: u64,
    pub inference_errors: u64,
    pub goals_accepted: u64,
    pub goals_rejected: u64,
    /// The last error or hold reason worth showing to an operator.
    pub last_error: String,
    /// A fault inside the node (inference error or panic, stalled or stopped worker, non-finite
    /// output): ERROR in `/diagnostics` until the next goal is accepted.
    pub fault: Option<String>,
    /// Joint states replaced in the input queue before the control loop took them (latest wins).
    pub events_dropped: u64,
}

/// p-th percentile (0..=100) by nearest rank.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

impl Counters {
    pub fn record_latency(&mut self, d: Duration) {
        if self.latencies_ms.len() == LATENCY_WINDOW {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms.push_back(d.as_secs_f64() * 1e3);
        self.inferences += 1;
    }

    /// `handoff 0.02, worker_wake 0.05, …`: the p99 of each overhead part.
    fn parts_p99(&self) -> String {
        OVERHEAD_PARTS
            .iter()
            .zip(&self.overhead_parts)
            .map(|(n, w)| match w.percentile(99.0) {
                Some(ms) => format!("{n} {ms:.2}"),
                None => format!("{n} n/a"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Median latency, if any inference ran.
    pub fn latency_p50(&self) -> Option<Duration> {
        let v: Vec<f64> = self.latencies_ms.iter().copied().collect();
        percentile(&v, 50.0).map(|ms| Duration::from_secs_f64(ms / 1e3))
    }

    pub fn latency_ms(&self, p: f64) -> Option<f64> {
        let v: Vec<f64> = self.latencies_ms.iter().copied().collect();
        percentile(&v, p)
    }

    /// Counts one control tick; the rate is measured over the diagnostics period.
    pub fn tick(&mut self) {
        self.ticks += 1;
    }

    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Control rate measured since the previous report.
    pub fn update_rate(&mut self, now: Instant) -> f64 {
        if let Some((t, n)) = self.rate_mark {
            let dt = now.saturating_duration_since(t).as_secs_f64();
            if dt > 0.0 {
                self.rate_hz = (self.ticks - n) as f64 / dt;
            }
        }
        self.rate_mark = Some((now, self.ticks));
        self.rate_hz
    }

    /// The `/diagnostics` message of node `name` in `state`.
    pub fn to_msg(&self, name: &str, state: &str, level: u8, header: Header) -> DiagnosticArray {
        let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.2}"));
        let kv = |k: &str, v: String| KeyValue {
            key: k.into(),
            value: v,
        };
        let values = vec![
            kv("state", state.to_string()),
            kv("inference_latency_p50_ms", f(self.latency_ms(50.0))),
            kv("inference_latency_p95_ms", f(self.latency_ms(95.0))),
            kv("control_rate_hz", format!("{:.2}", self.rate_hz)),
            kv("image_transport_p99_ms", f(self.transport.percentile(99.0))),
            kv("loop_work_p50_ms", f(self.loop_work.percentile(50.0))),
            kv("loop_work_p99_ms", f(self.loop_work.percentile(99.0))),
            kv("overhead_p50_ms", f(self.overhead.percentile(50.0))),
            kv("overhead_p99_ms", f(self.overhead.percentile(99.0))),
            kv("overhead_parts_p99_ms", self.parts_p99()),
            kv("frames_received", self.frames_received.to_string()),
            kv("frames_dropped", self.frames_dropped.to_string()),
            kv("bad_frames", self.bad_frames.to_string()),
            kv("bad_joint_states", self.bad_joint_states.to_string()),
            kv("clamp_events", self.clamp_events.to_string()),
            kv("refusals", self.refusals.to_string()),
            kv("late_steps_dropped", self.late_steps.to_string()),
            kv("holds", self.holds.to_string()),
            kv("inferences", self.inferences.to_string()),
            kv("inference_errors", self.inference_errors.to_string()),
            kv("goals_accepted", self.goals_accepted.to_string()),
            kv("goals_rejected", self.goals_rejected.to_string()),
            kv("last_error", self.last_error.clone()),
            kv("fault", self.fault.clone().unwrap_or_default()),
            kv("events_dropped", self.events_dropped.to_string()),
        ];
        DiagnosticArray {
            header,
            status: vec![DiagnosticStatus {
                level,
                name: format!("{name}: policy"),
                message: state.to_string(),
                hardware_id: name.to_string(),
                values,
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rate() {
        assert_eq!(percentile(&[], 50.0), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        let mut c = Counters::default();
        for ms in [10, 20, 30, 40] {
            c.record_latency(Duration::from_millis(ms));
        }
        assert_eq!(c.latency_ms(50.0), Some(20.0));
        let t0 = Instant::now();
        c.update_rate(t0);
        (0..10).for_each(|_| c.tick());
        let hz = c.update_rate(t0 + Duration::from_secs(2));
        assert!((hz - 5.0).abs() < 1e-9);
        let msg = c.to_msg("/arm", "running", DiagnosticStatus::OK, Header::default());
        let get = |k: &str| msg.status[0].values.iter().find(|v| v.key == k).unwrap().value.clone();
        assert_eq!(get("state"), "running");
        assert_eq!(get("inference_latency_p50_ms"), "20.00");
        assert_eq!(get("control_rate_hz"), "5.00");
    }
}
