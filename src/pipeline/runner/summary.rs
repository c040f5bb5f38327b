//! The summary table printed after a run.

use super::*;

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self
            .rows
            .iter()
            .map(|r| r.stage.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let verb = if self.dry_run { "plan" } else { "summary" };
        writeln!(f, "\n{verb} of {}:", self.pipeline.display())?;
        writeln!(
            f,
            "{:<w$}  {:<11}  {:<7}  {:>8}  reason",
            "stage", "kind", "status", "seconds"
        )?;
        for r in &self.rows {
            let secs = if r.status == Status::Ran {
                format!("{:.1}", r.seconds)
            } else {
                String::new()
            };
            let reason = r.reason.lines().next().unwrap_or_default();
            writeln!(
                f,
                "{:<w$}  {:<11}  {:<7}  {:>8}  {reason}",
                r.stage,
                r.kind.name(),
                r.status.to_string(),
                secs
            )?;
        }
        let ran = self.rows.iter().filter(|r| r.status == Status::Ran).count();
        let queued = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Submitted)
            .count();
        let skipped = self
            .rows
            .iter()
            .filter(|r| r.status == Status::Skipped)
            .count();
        if self.dry_run {
            let would = self
                .rows
                .iter()
                .filter(|r| r.status == Status::WouldRun)
                .count();
            let blocked = self
                .rows
                .iter()
                .filter(|r| r.status == Status::NotRun)
                .count();
            let blocked = if blocked > 0 {
                format!(", {blocked} blocked (an input is missing)")
            } else {
                String::new()
            };
            write!(
                f,
                "{} stages: {would} would run{blocked}, {skipped} up to date (dry run: nothing ran)",
                self.rows.len()
            )?;
            return Ok(());
        }
        if queued > 0 {
            writeln!(
                f,
                "{} stages: {ran} ran, {skipped} skipped, {queued} queued on Slurm (not waited for: \
                 `distill run` again picks up their results), in {:.1} s",
                self.rows.len(),
                self.seconds
            )?;
        } else {
            writeln!(
                f,
                "{} stages: {ran} ran, {skipped} skipped, in {:.1} s",
                self.rows.len(),
                self.seconds
            )?;
        }
        for r in &self.rows {
            if r.kind == Kind::Eval
                && let Some(report) = &r.report
            {
                writeln!(f, "\nresults of {}:\n{report}", r.stage)?;
            }
        }
        let mut folders: Vec<PathBuf> = Vec::new();
        for r in &self.rows {
            for o in &r.outs {
                let dir = o.parent().unwrap_or(Path::new("")).to_path_buf();
                if !folders.contains(&dir) {
                    folders.push(dir);
                }
            }
        }
        let shown: Vec<String> = folders
            .iter()
            .map(|d| {
                if d.as_os_str().is_empty() {
                    ".".to_string()
                } else {
                    format!("{}/", d.display())
                }
            })
            .collect();
        writeln!(
            f,
            "\noutputs in {} (relative to {}); lock: {}",
            shown.join(", "),
            self.wdir.display(),
            self.lock.display()
        )?;
        for r in &self.rows {
            if r.kind == Kind::Eval && matches!(r.status, Status::Ran | Status::Skipped) {
                for o in &r.outs {
                    writeln!(f, "metrics of {}: {}", r.stage, o.display())?;
                }
            }
        }
        for r in &self.rows {
            if r.kind == Kind::Report && matches!(r.status, Status::Ran | Status::Skipped) {
                for o in &r.outs {
                    if r.stage == "report" {
                        writeln!(f, "report: {}", o.display())?;
                    } else {
                        writeln!(f, "report of {}: {}", r.stage, o.display())?;
                    }
                }
            }
        }
        Ok(())
    }
}
