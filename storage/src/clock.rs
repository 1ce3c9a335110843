//! The one place time is read: leases, presence marks, polling intervals and
//! timeouts ask a [`Clock`], so that a platform with a virtual clock (a
//! simulator) can run the same code in its own time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A source of time, measured from an origin of the clock's choosing.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The time since this clock's origin.
    fn now(&self) -> Duration;

    /// Blocks the calling thread for `duration` of this clock's time.
    fn sleep(&self, duration: Duration);

    /// The time from `earlier` (a reading of this clock) to now; zero if
    /// `earlier` is later.
    fn since(&self, earlier: Duration) -> Duration {
        self.now().saturating_sub(earlier)
    }
}

/// Wall-clock time (monotonic), from an origin shared by the whole process.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        origin().elapsed()
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_time_moves_forward_and_sleeps() {
        let clock = SystemClock;
        let before = clock.now();
        clock.sleep(Duration::from_millis(2));
        assert!(clock.since(before) >= Duration::from_millis(2));
        assert_eq!(
            clock.since(clock.now() + Duration::from_secs(1)),
            Duration::ZERO
        );
    }
}
