//! What a run found, and its table for people.

use crate::SpecialistSet;
use serde::Serialize;
use std::path::PathBuf;

/// What a run found, for people (`Display`) and for the pipeline runner (`Serialize`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub set: SpecialistSet,
    pub out: PathBuf,
    pub heatmap: PathBuf,
    pub teachers: usize,
    pub seconds: f64,
    /// Seconds spent reading the store, computing the matrix, clustering, and writing.
    pub phases: Vec<(String, f64)>,
    /// K-means inertia of the kept restart (before size bounds).
    pub inertia: f64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:>6}  {:>5}  {:>8}  classes",
            "subset", "size", "captured"
        )?;
        for s in &self.set.subsets {
            let mut classes: Vec<String> = s
                .classes
                .iter()
                .enumerate()
                .map(|(i, c)| match &s.names {
                    Some(n) if n[i] != c.to_string() => format!("{c} ({})", n[i]),
                    _ => c.to_string(),
                })
                .collect();
            if classes.len() > 24 {
                let more = classes.len() - 20;
                classes.truncate(20);
                classes.push(format!("… ({more} more)"));
            }
            let joined = if s.joined.is_empty() {
                String::new()
            } else {
                format!("  [joined: {}]", join(&s.joined))
            };
            writeln!(
                f,
                "{:>6}  {:>5}  {:>7.1}%  {}{joined}",
                s.id,
                s.size,
                100.0 * s.captured,
                classes.join(" ")
            )?;
        }
        if !self.set.generalist_only.is_empty() {
            writeln!(f, "generalist only: {}", join(&self.set.generalist_only))?;
        }
        write!(
            f,
            "{} subsets capture {:.1}% of the off-diagonal {} mass",
            self.set.subsets.len(),
            100.0 * self.set.captured,
            self.set.method
        )?;
        if let Some(a) = self.set.ari_vs_true_groups {
            write!(f, "; ARI against the true groups {a:.3}")?;
        }
        writeln!(f)?;
        write!(
            f,
            "clustered {} classes from {} rows × {} teachers in {:.2} s ({:.0} rows/s; {}) → {}, {}",
            self.set.classes,
            self.set.rows,
            self.teachers,
            self.seconds,
            self.set.rows as f64 / self.seconds.max(1e-9),
            self.phases
                .iter()
                .map(|(name, s)| format!("{name} {s:.2} s"))
                .collect::<Vec<_>>()
                .join(", "),
            self.out.display(),
            self.heatmap.display()
        )
    }
}

fn join(classes: &[u32]) -> String {
    classes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}
