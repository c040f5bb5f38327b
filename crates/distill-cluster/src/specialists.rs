//! `specialists.yaml`: the class subsets one specialist each will be trained on.

use crate::matrix::Method;
use crate::{ClusterError, Result};
use distill_core::math::Combine;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Version of the `specialists.yaml` layout written by this tool.
pub const SPECIALISTS_VERSION: u32 = 1;

/// One specialist's classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subset {
    /// 0-based, in the order of the file.
    pub id: usize,
    /// Class ids, ascending (the subset's own classes and those that joined it by overlap).
    pub classes: Vec<u32>,
    /// Class names, parallel to `classes`, when the data set has names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    pub size: usize,
    /// Share of the ensemble's positive off-diagonal mass (of the clustering matrix) that lies
    /// between two classes of this subset.
    pub captured: f64,
    /// The classes of `classes` whose own subset is another one (joined by `--overlap`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<u32>,
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpecialistSet {
    pub version: u32,
    /// The soft-target store the subsets were found from.
    pub store: String,
    /// The data set the store was made from, as recorded in it.
    pub dataset: String,
    pub method: Method,
    pub temperature: f32,
    pub combine: Combine,
    /// K, the number of subsets asked for (and written).
    pub specialists: usize,
    pub seed: u64,
    /// Class count of the store.
    pub classes: usize,
    /// Store rows the matrix was computed from.
    pub rows: usize,
    /// The most subsets one class may belong to.
    pub overlap: usize,
    /// Share of the positive off-diagonal mass between two classes that share some subset.
    pub captured: f64,
    /// Classes with (almost) no off-diagonal mass, left to the generalist and in no subset.
    pub generalist_only: Vec<u32>,
    pub subsets: Vec<Subset>,
    /// Adjusted Rand index of the subsets (each class's own one) against the true groups, when
    /// the store was made from a synthetic data set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_vs_true_groups: Option<f64>,
}

impl SpecialistSet {
    /// Each class's own subset (`None` for generalist-only classes and classes in none).
    pub fn primary_assignment(&self) -> Vec<Option<usize>> {
        let mut a = vec![None; self.classes];
        for s in &self.subsets {
            for &c in &s.classes {
                if !s.joined.contains(&c)
                    && let Some(slot) = a.get_mut(c as usize)
                {
                    *slot = Some(s.id);
                }
            }
        }
        a
    }

    /// Checks the invariants a reader relies on; `path` names the file in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| {
            Err(ClusterError::Specialists {
                path: path.to_path_buf(),
                message,
            })
        };
        if self.version != SPECIALISTS_VERSION {
            return bad(format!(
                "version {} is not supported (this tool reads version {SPECIALISTS_VERSION})",
                self.version
            ));
        }
        let mut own = vec![0usize; self.classes];
        for (k, s) in self.subsets.iter().enumerate() {
            if s.id != k {
                return bad(format!(
                    "subset {k} has id {}; ids must be 0, 1, 2, …",
                    s.id
                ));
            }
            if s.classes.is_empty() || s.size != s.classes.len() {
                return bad(format!(
                    "subset {k} has size {} but lists {} classes",
                    s.size,
                    s.classes.len()
                ));
            }
            if s.classes.windows(2).any(|w| w[0] >= w[1]) {
                return bad(format!(
                    "subset {k}: classes must be ascending and distinct"
                ));
            }
            if let Some(&c) = s.classes.iter().find(|&&c| c as usize >= self.classes) {
                return bad(format!(
                    "subset {k} names class {c}, but there are only {} classes",
                    self.classes
                ));
            }
            if let Some(names) = &s.names
                && names.len() != s.classes.len()
            {
                return bad(format!(
                    "subset {k} has {} names for {} classes",
                    names.len(),
                    s.classes.len()
                ));
            }
            if let Some(&c) = s.joined.iter().find(|c| !s.classes.contains(c)) {
                return bad(format!(
                    "subset {k}: joined class {c} is not among its classes"
                ));
            }
            for &c in s.classes.iter().filter(|c| !s.joined.contains(c)) {
                own[c as usize] += 1;
            }
        }
        if let Some(c) = own.iter().position(|&n| n > 1) {
            return bad(format!(
                "class {c} is the own class of more than one subset"
            ));
        }
        if let Some(&c) = self
            .generalist_only
            .iter()
            .find(|&&c| c as usize >= self.classes || own[c as usize] > 0)
        {
            return bad(format!(
                "generalist-only class {c} does not exist or also belongs to a subset"
            ));
        }
        Ok(())
    }
}

/// Reads and checks a `specialists.yaml` written by `distill-cluster` (a regular file of at most
/// [`distill_core::input::MAX_TEXT_BYTES`]).
pub fn read_specialists(path: &Path) -> Result<SpecialistSet> {
    let text = distill_core::input::read_to_string(
        "the subsets file",
        path,
        distill_core::input::MAX_TEXT_BYTES,
    )?;
    let set: SpecialistSet =
        serde_norway::from_str(&text).map_err(|e| ClusterError::Specialists {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    set.validate(path)?;
    Ok(set)
}

/// Writes `set` to `path` atomically.
pub fn write_specialists(path: &Path, set: &SpecialistSet) -> Result<()> {
    let text = serde_norway::to_string(set).map_err(|e| ClusterError::Specialists {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    distill_core::atomic::write_bytes(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SpecialistSet {
        SpecialistSet {
            version: SPECIALISTS_VERSION,
            store: "work/soft.parquet".into(),
            dataset: "data/mnist".into(),
            method: Method::SecondMoment,
            temperature: 2.0,
            combine: Combine::Arithmetic,
            specialists: 2,
            seed: 0,
            classes: 5,
            rows: 100,
            overlap: 2,
            captured: 0.75,
            generalist_only: vec![4],
            subsets: vec![
                Subset {
                    id: 0,
                    classes: vec![0, 1, 2],
                    names: Some(vec!["0".into(), "1".into(), "2".into()]),
                    size: 3,
                    captured: 0.5,
                    joined: vec![2],
                },
                Subset {
                    id: 1,
                    classes: vec![2, 3],
                    names: None,
                    size: 2,
                    captured: 0.25,
                    joined: vec![],
                },
            ],
            ari_vs_true_groups: None,
        }
    }

    #[test]
    fn roundtrip_and_primary_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        write_specialists(&path, &sample()).unwrap();
        let back = read_specialists(&path).unwrap();
        assert_eq!(back, sample());
        assert_eq!(
            back.primary_assignment(),
            vec![Some(0), Some(0), Some(1), Some(1), None]
        );
    }

    #[test]
    fn broken_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yaml");
        let mut s = sample();
        s.subsets[1].classes = vec![3, 9];
        write_specialists(&path, &s).unwrap();
        let e = read_specialists(&path).unwrap_err().to_string();
        assert!(e.contains("s.yaml") && e.contains("class 9"), "{e}");
        std::fs::write(&path, "version: [").unwrap();
        assert!(read_specialists(&path).is_err());
    }
}
