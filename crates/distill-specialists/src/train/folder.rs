//! The output folder's manifest, written last, and the clean-up of files it no longer names. The
//! stage replaces or deletes only the specialist files that its own earlier manifest in the folder
//! lists: any other file there is left alone, and one in the way of a new specialist is refused
//! before any work.

use super::{Config, SpecialistReport, specialist_file};
use crate::manifest::{FileRef, MANIFEST_VERSION, Manifest, SpecialistEntry};
use crate::{Result, SpecialistsError};
use distill_cluster::specialists::Subset;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The ids of the specialist files (`specialist-<id>.onnx`, directly in the folder) that the
/// manifest an earlier run left in `--out` lists: the files this stage may replace or delete.
/// Empty without a manifest; an error when `manifest.yaml` is there but is not a manifest this
/// stage wrote, since writing the new one would destroy it.
pub(super) fn owned_files(config: &Config) -> Result<BTreeSet<usize>> {
    let path = config.manifest_path();
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(BTreeSet::new());
    }
    let old = Manifest::load(&path).map_err(|e| {
        SpecialistsError::invalid(format!(
            "--out {}: it holds a manifest.yaml that this stage cannot read as its own ({e}); \
             writing the new manifest would replace it: move the file away, or choose another \
             --out",
            config.out.display()
        ))
    })?;
    Ok(old
        .specialists
        .iter()
        .filter(|e| e.path == specialist_file(e.id))
        .map(|e| e.id)
        .collect())
}

/// Refuses, before any work, to write a specialist over a file of the same name that the
/// folder's earlier manifest does not list (`owned`): a user's file, or a model stored there.
pub(super) fn check_replaceable(
    config: &Config,
    subsets: &[&Subset],
    owned: &BTreeSet<usize>,
) -> Result<()> {
    for s in subsets {
        let file = config.out.join(specialist_file(s.id));
        if std::fs::symlink_metadata(&file).is_ok() && !owned.contains(&s.id) {
            return Err(SpecialistsError::invalid(format!(
                "--out {}: {} is already there, and no manifest.yaml of an earlier \
                 distill-specialists run in that folder lists it, so it is not this stage's to \
                 replace; move it away (or delete it if it is left over from a killed run), or \
                 choose another --out",
                config.out.display(),
                file.display()
            )));
        }
    }
    Ok(())
}

/// `target` relative to the folder `base` (both as given, made absolute when they exist), for the
/// manifest; the absolute path when there is no relative one.
fn relative_to(target: &Path, base: &Path) -> String {
    let (Ok(t), Ok(b)) = (target.canonicalize(), base.canonicalize()) else {
        return target.display().to_string();
    };
    let tc: Vec<_> = t.components().collect();
    let bc: Vec<_> = b.components().collect();
    let common = tc.iter().zip(&bc).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return t.display().to_string();
    }
    let mut rel = PathBuf::new();
    for _ in common..bc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c.as_os_str());
    }
    rel.display().to_string()
}

/// Writes the manifest last. With `--only`, the entries of other specialists already in the
/// folder's manifest are kept when it was made from the same generalist and subsets; without it,
/// the files of `owned` (those the earlier manifest listed) that the new one does not list are
/// deleted.
pub(super) fn write_manifest(
    config: &Config,
    generalist_sha256: &str,
    classes: usize,
    reports: &[SpecialistReport],
    owned: &BTreeSet<usize>,
) -> Result<PathBuf> {
    let path = config.manifest_path();
    let subsets = relative_to(&config.subsets, &config.out);
    let store = config
        .soft
        .soft_targets
        .as_ref()
        .map(|s| relative_to(s, &config.out));
    let mut entries: Vec<SpecialistEntry> = reports.iter().map(|r| r.entry.clone()).collect();
    if config.only.is_some()
        && let Ok(old) = Manifest::load(&path)
        && old.generalist.sha256 == generalist_sha256
        && old.subsets == subsets
        && old.store == store
    {
        for e in old.specialists {
            let exists = config.out.join(&e.path).is_file();
            if exists && !entries.iter().any(|n| n.id == e.id) {
                entries.push(e);
            }
        }
    }
    entries.sort_by_key(|e| e.id);
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        tool_version: distill_core::TOOL_VERSION.into(),
        generalist: FileRef {
            path: relative_to(&config.generalist, &config.out),
            sha256: generalist_sha256.to_string(),
        },
        classes,
        subsets,
        store,
        specialists: entries,
    };
    manifest.validate(&path)?;
    manifest.save(&path)?;
    if config.only.is_none() {
        remove_stale(&config.out, &manifest, owned);
    }
    Ok(path)
}

/// Removes the `specialist-<id>.onnx` files the earlier manifest listed (`owned`) that the new
/// manifest does not (a run with fewer subsets), so that no file of this stage outlives the
/// manifest naming it. Files no manifest of this stage listed are never touched.
fn remove_stale(out: &Path, manifest: &Manifest, owned: &BTreeSet<usize>) {
    for &id in owned {
        if !manifest.specialists.iter().any(|e| e.id == id) {
            let _ = std::fs::remove_file(out.join(specialist_file(id)));
        }
    }
}
