//! The output folder's manifest, written last, and the clean-up of files it no longer names.

use super::{Config, SpecialistReport};
use crate::Result;
use crate::manifest::{FileRef, MANIFEST_VERSION, Manifest, SpecialistEntry};
use std::path::{Path, PathBuf};

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
/// folder's manifest are kept when it was made from the same generalist and subsets.
pub(super) fn write_manifest(
    config: &Config,
    generalist_sha256: &str,
    classes: usize,
    reports: &[SpecialistReport],
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
        remove_stale(&config.out, &manifest);
    }
    Ok(path)
}

/// Removes `specialist-<id>.onnx` files of an earlier run that the new manifest does not list (a
/// run with fewer subsets), so the folder holds exactly what the manifest names.
fn remove_stale(out: &Path, manifest: &Manifest) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let id = name
            .strip_prefix("specialist-")
            .and_then(|r| r.strip_suffix(".onnx"))
            .and_then(|id| id.parse::<usize>().ok());
        if let Some(id) = id
            && !manifest.specialists.iter().any(|e| e.id == id)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
