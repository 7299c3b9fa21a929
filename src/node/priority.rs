//! Thread priorities for the control path: the model runs at a lower priority than the threads
//! that move frames and commands, so on a busy CPU a frame or a chunk is not kept waiting behind
//! the model; optionally the control threads run SCHED_FIFO (needs CAP_SYS_NICE, as ros2_control's
//! realtime loops do).

/// Lowers the calling thread's priority to `nice` (0..=19; lowering needs no privilege).
pub fn lower_current_thread(nice: i32) -> Result<(), String> {
    // SAFETY: gettid has no preconditions; setpriority only reads its arguments.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("setpriority({nice}): {}", std::io::Error::last_os_error()))
    }
}

/// Runs the calling thread under SCHED_FIFO at `priority` (1..=99).
pub fn realtime_current_thread(priority: i32) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param that outlives the call; pthread_self is always valid.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "SCHED_FIFO priority {priority}: {} (needs CAP_SYS_NICE or an rtprio limit)",
            std::io::Error::from_raw_os_error(rc)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_lower_its_own_priority() {
        std::thread::spawn(|| {
            lower_current_thread(5).unwrap();
            // SAFETY: as above.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            assert_eq!(nice, 5);
        })
        .join()
        .unwrap();
        assert!(realtime_current_thread(0).is_err(), "SCHED_FIFO priority 0 is invalid");
    }
}
