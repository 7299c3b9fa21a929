//! The latest-value slot between the transport and the inference worker: a new frame replaces an
//! unused one (which is counted as dropped), so frames are never queued behind a slow model.
use std::time::{Duration, Instant};

/// Holds the newest item with its arrival time.
#[derive(Debug)]
pub struct LatestSlot<T> {
    item: Option<T>,
    /// Arrival of the newest item ever put, taken or not (for staleness).
    last_arrival: Option<Instant>,
    /// The same on the wall clock (a watchdog that a stalled simulation clock cannot stop).
    last_wall: Option<Instant>,
    received: u64,
    dropped: u64,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        Self {
            item: None,
            last_arrival: None,
            last_wall: None,
            received: 0,
            dropped: 0,
        }
    }
}

impl<T> LatestSlot<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `item`; an item nobody took is dropped and counted.
    pub fn put(&mut self, item: T, at: Instant) {
        if self.item.replace(item).is_some() {
            self.dropped += 1;
        }
        self.received += 1;
        self.last_arrival = Some(at);
        self.last_wall = Some(Instant::now());
    }

    /// Wall-clock age of the newest arrival (None: nothing ever arrived).
    pub fn wall_age(&self) -> Option<Duration> {
        self.last_wall.map(|t| t.elapsed())
    }

    /// Takes the newest item, if one arrived since the last take.
    pub fn take(&mut self) -> Option<T> {
        self.item.take()
    }

    /// True if an untaken item waits.
    pub fn has_new(&self) -> bool {
        self.item.is_some()
    }

    /// Age of the newest arrival (None: nothing ever arrived).
    pub fn age(&self, now: Instant) -> Option<Duration> {
        self.last_arrival.map(|t| now.saturating_duration_since(t))
    }

    /// Arrival of the newest item ever put.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// True if nothing arrived within `timeout`.
    pub fn is_stale(&self, now: Instant, timeout: Duration) -> bool {
        self.age(now).is_none_or(|a| a > timeout)
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_wins_and_drops_are_counted() {
        let t0 = Instant::now();
        let mut s = LatestSlot::new();
        assert!(s.is_stale(t0, Duration::from_secs(1)));
        s.put(1, t0);
        s.put(2, t0);
        s.put(3, t0 + Duration::from_millis(10));
        assert_eq!(s.take(), Some(3));
        assert_eq!(s.take(), None);
        assert_eq!((s.received(), s.dropped()), (3, 2));
        s.put(4, t0 + Duration::from_millis(20));
        assert_eq!(s.take(), Some(4));
        assert_eq!(s.dropped(), 2);
        let later = t0 + Duration::from_millis(2020);
        assert!(s.is_stale(later, Duration::from_secs(1)));
        assert!(!s.is_stale(t0 + Duration::from_millis(500), Duration::from_secs(1)));
    }
}
