//! `eventflow run FILE --processes N --local`: starts the N processes of a cluster on this
//! machine and supervises them.
//!
//! The parent finds N free loopback ports, writes a host file into a temporary folder, and runs
//! `eventflow run FILE --processes N --process I --hostfile F …` once per process (the same
//! binary, the other options forwarded). It forwards SIGINT and SIGTERM to the children; when a
//! child fails, it stops the others after a short grace period (they could otherwise wait for
//! ever for a peer that never connected), and it exits with the worst (highest) status of the
//! children that ended on their own: 0 when all succeeded.

use std::ffi::OsString;
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs `args` (an `eventflow run …` command line without the cluster flags) as `processes`
/// processes on loopback; returns the exit code to end with.
pub fn run_local(args: &[OsString], processes: usize) -> ExitCode {
    match supervise(args, processes) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: cannot start the local cluster: {e}");
            ExitCode::from(2)
        }
    }
}

/// Free TCP ports on 127.0.0.1, found by binding port 0 (all at once, so they differ).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// The exit code a shell would show for `status`: the code, or 128 + the signal.
fn code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        (None, None) => 2,
    }
}

fn supervise(args: &[OsString], processes: usize) -> std::io::Result<u8> {
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!(
        "eventflow-local-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let hosts = dir.join("hosts");
        let text: String = free_ports(processes)?
            .iter()
            .map(|p| format!("127.0.0.1:{p}\n"))
            .collect();
        std::fs::write(&hosts, text)?;
        let signal = Arc::new(AtomicUsize::new(0));
        let ids: Vec<_> = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
            .into_iter()
            .filter_map(|s| signal_hook::flag::register_usize(s, signal.clone(), s as usize).ok())
            .collect();
        let mut children: Vec<Child> = Vec::new();
        for i in 0..processes {
            let mut cmd = Command::new(&exe);
            cmd.args(args)
                .arg("--processes")
                .arg(processes.to_string())
                .arg("--process")
                .arg(i.to_string())
                .arg("--hostfile")
                .arg(&hosts)
                .stdin(std::process::Stdio::null());
            if i > 0 && !args.iter().any(|a| a == "--quiet") {
                cmd.arg("--quiet"); // process 0 reports for the whole run
            }
            match cmd.spawn() {
                Ok(c) => children.push(c),
                Err(e) => {
                    for c in &mut children {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    return Err(e);
                }
            }
        }
        let code = wait_all(&mut children, &signal);
        for id in ids {
            signal_hook::low_level::unregister(id);
        }
        Ok(code)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Waits for every child; forwards signals; stops the rest soon after one fails. Returns the
/// worst (highest) status of the children that ended on their own.
fn wait_all(children: &mut [Child], signal: &AtomicUsize) -> u8 {
    let mut status: Vec<Option<u8>> = vec![None; children.len()];
    // Children sent SIGTERM because another failed: their status says nothing new.
    let mut terminated = vec![false; children.len()];
    let mut forwarded = 0;
    // When a child failed: the others get this long to end on their own (they stop at once
    // when a peer died, and a failing run ends everywhere) before they are sent SIGTERM.
    let mut failed_at: Option<std::time::Instant> = None;
    let grace = Duration::from_secs(2);
    let send = |children: &[Child], status: &[Option<u8>], sig: i32| {
        for (c, s) in children.iter().zip(status) {
            if s.is_none() {
                // SAFETY: kill(2) on our own child's pid, which is not yet reaped (its status
                // is unknown), so the pid cannot have been reused.
                unsafe {
                    libc::kill(c.id() as libc::pid_t, sig);
                }
            }
        }
    };
    while status.iter().any(Option::is_none) {
        let sig = signal.load(Ordering::Relaxed);
        if sig != 0 && sig != forwarded {
            forwarded = sig;
            send(children, &status, sig as i32);
        }
        for (i, c) in children.iter_mut().enumerate() {
            if status[i].is_some() {
                continue;
            }
            if let Ok(Some(s)) = c.try_wait() {
                let code = code_of(s);
                status[i] = Some(code);
                if code != 0 && !terminated[i] {
                    eprintln!("eventflow: process {i} exited with status {code}");
                    failed_at.get_or_insert_with(std::time::Instant::now);
                }
            }
        }
        if failed_at.is_some_and(|t| t.elapsed() > grace) {
            for (i, s) in status.iter().enumerate() {
                terminated[i] |= s.is_none();
            }
            // Repeated every round; a child already ending ignores it.
            send(children, &status, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    status
        .iter()
        .zip(&terminated)
        .filter(|(_, t)| !**t)
        .filter_map(|(s, _)| *s)
        .max()
        .unwrap_or(0)
}
