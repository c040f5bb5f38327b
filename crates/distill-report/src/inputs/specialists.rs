//! `specialists.yaml`, written by distill-cluster.

use super::{SPECIALISTS_VERSION, bad, read_text};
use crate::ReportError;
use serde::Deserialize;
use std::path::Path;

/// `specialists.yaml`, the fields the page shows.
#[derive(Clone, Debug, Deserialize)]
pub struct Specialists {
    pub version: u32,
    pub classes: usize,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub rows: Option<usize>,
    #[serde(default)]
    pub captured: Option<f64>,
    #[serde(default)]
    pub generalist_only: Vec<u32>,
    pub subsets: Vec<Subset>,
    #[serde(default)]
    pub ari_vs_true_groups: Option<f64>,
}

/// One subset of `specialists.yaml`.
#[derive(Clone, Debug, Deserialize)]
pub struct Subset {
    pub id: usize,
    pub classes: Vec<u32>,
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub captured: Option<f64>,
    #[serde(default)]
    pub joined: Vec<u32>,
}

impl Specialists {
    /// The classes in subset order (each class's own subset; joined classes are not repeated),
    /// then the generalist-only ones and any class in no subset; and each subset's block size.
    pub fn order(&self) -> (Vec<usize>, Vec<usize>) {
        let mut order = Vec::new();
        let mut blocks = Vec::new();
        for s in &self.subsets {
            let own: Vec<usize> = s
                .classes
                .iter()
                .filter(|c| !s.joined.contains(c))
                .map(|&c| c as usize)
                .filter(|c| !order.contains(c))
                .collect();
            blocks.push(own.len());
            order.extend(own);
        }
        for c in 0..self.classes {
            if !order.contains(&c) {
                order.push(c);
            }
        }
        (order, blocks)
    }
}

/// Reads `specialists.yaml` and checks its version and class ids.
pub fn read_specialists(path: &Path) -> Result<Specialists, ReportError> {
    let text = read_text(path)?;
    let s: Specialists = serde_norway::from_str(&text).map_err(|e| {
        bad(
            path,
            format!("not a specialists.yaml written by distill-cluster: {e}"),
        )
    })?;
    if s.version != SPECIALISTS_VERSION {
        return Err(bad(
            path,
            format!(
                "`version` is {}, this report reads version {SPECIALISTS_VERSION}: cluster again with distill-cluster of this version",
                s.version
            ),
        ));
    }
    for (k, subset) in s.subsets.iter().enumerate() {
        if let Some(&c) = subset.classes.iter().find(|&&c| c as usize >= s.classes) {
            return Err(bad(
                path,
                format!(
                    "subsets[{k}] names class {c}, but `classes` is {}: expected class ids 0..{}",
                    s.classes,
                    s.classes.saturating_sub(1)
                ),
            ));
        }
        if let Some(names) = &subset.names
            && names.len() != subset.classes.len()
        {
            return Err(bad(
                path,
                format!(
                    "subsets[{k}] has {} names for {} classes: expected one name per class",
                    names.len(),
                    subset.classes.len()
                ),
            ));
        }
    }
    Ok(s)
}
