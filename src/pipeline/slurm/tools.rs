//! Talking to Slurm: its commands, with timeouts, and the controller's state.

use super::*;

/// A program on PATH.
pub(in crate::pipeline) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The Slurm commands a submission needs, on PATH.
pub(in crate::pipeline) fn check_tools() -> Result<()> {
    let missing: Vec<&str> = ["sbatch", "squeue", "scontrol", "scancel"]
        .into_iter()
        .filter(|p| which(p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(PipelineError::Usage(format!(
        "--executor slurm needs Slurm's commands, and {} {} not on PATH ({}); nothing was submitted\n  \
         hint: install Slurm's client commands (Debian: apt-get install slurm-client), or on this \
         machine run scripts/slurm-local.sh up for a one-node Slurm; or leave out --executor slurm \
         to run the stages here",
        missing.join(", "),
        if missing.len() == 1 { "is" } else { "are" },
        std::env::var("PATH").unwrap_or_default()
    )))
}

/// Runs a Slurm command, giving up after `timeout`; returns (success, stdout, stderr).
pub(in crate::pipeline) fn slurm(
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<(bool, String, String)> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| PipelineError::Usage(format!("cannot start {program}: {e}")))?;
    let started = Instant::now();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut o = String::new();
        let mut e = String::new();
        if let Some(s) = out.as_mut() {
            let _ = std::io::Read::read_to_string(s, &mut o);
        }
        if let Some(s) = err.as_mut() {
            let _ = std::io::Read::read_to_string(s, &mut e);
        }
        (o, e)
    });
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| PipelineError::Usage(format!("{program}: {e}")))?
        {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (o, e) = reader.join().unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), o, e)),
        None => Ok((
            false,
            o,
            format!("{e}(no answer within {} s)", timeout.as_secs()),
        )),
    }
}

pub(in crate::pipeline) fn conf_description() -> String {
    match std::env::var_os("SLURM_CONF") {
        Some(c) => format!("SLURM_CONF={}", Path::new(&c).display()),
        None => "SLURM_CONF is not set, so /etc/slurm/slurm.conf (or the DNS SRV record)".into(),
    }
}

/// Fails (exit 2) unless `scontrol ping` finds the controller up; nothing is submitted before.
pub(in crate::pipeline) fn check_controller() -> Result<()> {
    let fix = "start it (on this machine: scripts/slurm-local.sh up), or set SLURM_CONF to your \
               cluster's slurm.conf; or leave out --executor slurm to run the stages here";
    if let Some(c) = std::env::var_os("SLURM_CONF")
        && !Path::new(&c).is_file()
    {
        return Err(PipelineError::Usage(format!(
            "SLURM_CONF={} is not a file, so the Slurm controller cannot be found; nothing was \
             submitted\n  hint: {fix}",
            Path::new(&c).display()
        )));
    }
    let (ok, out, err) = slurm("scontrol", &["ping"], Duration::from_secs(60))?;
    if ok && out.contains("is UP") {
        return Ok(());
    }
    let said: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("**"))
        .collect();
    Err(PipelineError::Usage(format!(
        "cannot reach the Slurm controller (slurmctld): `scontrol ping` said \"{}\" ({}); nothing \
         was submitted\n  hint: {fix}",
        said.join(" / "),
        conf_description()
    )))
}

/// The state of every job of this user that Slurm still knows, by id (`12`, `12_3`).
pub(in crate::pipeline) fn squeue() -> Result<BTreeMap<String, String>> {
    let (ok, out, err) = slurm(
        "squeue",
        &[
            "--me",
            "--noheader",
            "--array",
            "--states=all",
            "--format=%i|%T",
        ],
        Duration::from_secs(60),
    )?;
    if !ok {
        return Err(PipelineError::Usage(format!(
            "squeue failed: {} ({})",
            err.trim(),
            conf_description()
        )));
    }
    Ok(out
        .lines()
        .filter_map(|l| l.trim().split_once('|'))
        .map(|(id, st)| (id.to_string(), st.to_string()))
        .collect())
}

/// Whether a job state (squeue's %T) means the job may still run its stage.
pub(in crate::pipeline) fn active(state: &str) -> bool {
    !matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "NODE_FAIL"
            | "PREEMPTED"
            | "OUT_OF_MEMORY"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "SPECIAL_EXIT"
    )
}

pub(in crate::pipeline) fn scancel(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let args: Vec<&str> = ids.iter().map(String::as_str).collect();
    let _ = slurm("scancel", &args, Duration::from_secs(60));
}
