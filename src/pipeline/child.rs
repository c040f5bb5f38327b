//! Running a `cmd` stage's shell command so that it never outlives `distill run`.
//!
//! The command runs in its own process group under `sh`, which (on Linux) is told by the kernel
//! to take SIGTERM when `distill run` dies, however it dies (SIGKILL included), and then
//! terminates the whole group, grandchildren too. On Ctrl-C the runner terminates the group
//! itself. Without this, killing the runner left a `python export.py` writing outputs after
//! `distill run` had exited.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::Duration;

/// How a command ended.
pub enum Ended {
    Exited(ExitStatus),
    /// Stopped because an interrupt was requested.
    Interrupted,
}

/// Runs `cmd` with `sh -c` (its stdin `/dev/null`), waiting for it; stops it on an interrupt request.
pub fn run_shell(cmd: &str) -> std::io::Result<Ended> {
    // `wait` (unlike a foreground command) returns when a trapped signal arrives, so the trap
    // runs at once; `kill 0` signals the command's own process group, made below.
    let script = format!("trap 'kill -TERM 0' TERM HUP\n( {cmd}\n) &\nwait $!");
    let mut command = Command::new("sh");
    // The command reads nothing from the terminal or from whatever feeds `distill run`.
    command
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .process_group(0);
    set_parent_death_signal(&mut command);
    let mut child = command.spawn()?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ended::Exited(status));
        }
        if distill_core::interrupt::requested() {
            terminate_group(&mut child);
            return Ok(Ended::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn terminate_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let _ = child.wait();
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2) and
    // getppid(2), both async-signal-safe; it touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody will signal us.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other(
                    "distill run exited while starting the command",
                ));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_command: &mut Command) {}
