//! How much parallel work this machine gives right now: a fixed CPU-bound loop timed on one
//! thread, then on N threads started together. A VM's vCPUs may share physical cores or be
//! throttled by the host (on the 2-vCPU machines this project is measured on, two such loops
//! have run anywhere from 1.0 to 2.0 times the work of one, minutes apart), and N workers
//! cannot scale past what N plain threads get. `eventflow bench` measures this before each run
//! with more than one worker and reports it beside the workers' own speedup.

use std::time::Instant;

/// Iterations of the loop: about 0.1 s on one core of the machines above.
const ITERATIONS: u64 = 100_000_000;

/// A dependent chain of xorshift steps: pure ALU work, no memory traffic, not vectorisable.
fn spin(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..ITERATIONS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

/// Seconds until the slowest of `threads` threads, started together, finishes the loop.
fn time_threads(threads: usize) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || std::hint::black_box(spin(t as u64 + 7))))
        .collect();
    for h in handles {
        let _ = h.join();
    }
    start.elapsed().as_secs_f64()
}

/// The machine's speedup with `threads` threads at the moment: `threads` × (time of the loop on
/// one thread ÷ time of `threads` copies at once). 1.0 for one thread.
pub fn machine_speedup(threads: usize) -> f64 {
    if threads <= 1 {
        return 1.0;
    }
    // The best of two for one thread: a single loop that another process preempted would
    // inflate the speedup past the thread count.
    let one = time_threads(1).min(time_threads(1));
    let many = time_threads(threads);
    threads as f64 * one / many.max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_is_the_unit_and_more_threads_give_a_positive_speedup() {
        assert_eq!(machine_speedup(1), 1.0);
        let two = machine_speedup(2);
        // No bound holds on a loaded machine (tests run in parallel): other processes can slow
        // either timing. It is a measured, finite, positive ratio.
        assert!(two.is_finite() && two > 0.0, "{two}");
    }
}
