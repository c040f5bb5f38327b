//! A store folder of `part-K-of-N.parquet` files (one per `distill-teach --shard K/N`): read
//! together, checked for completeness and consistency, and merged into one store.

use super::*;
use reader::read_one;

/// Path of part `k` of `n` inside a store folder.
pub fn part_path(dir: &Path, k: usize, n: usize) -> PathBuf {
    dir.join(format!("part-{k}-of-{n}.parquet"))
}

/// Reads a store file, or a folder of part files (all present and consistent).
pub fn read_store(path: &Path) -> Result<SoftTargets> {
    if !path.is_dir() {
        return read_one(path);
    }
    let mut parts: Vec<(usize, usize, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| CoreError::io(path, e))? {
        let p = entry.map_err(|e| CoreError::io(path, e))?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if let Some((k, n)) = parse_part_name(&name) {
            parts.push((k, n, p));
        }
    }
    if parts.is_empty() {
        return Err(CoreError::invalid(format!(
            "{}: no part-K-of-N.parquet files in this folder",
            path.display()
        )));
    }
    parts.sort();
    let n = parts[0].1;
    if let Some(p) = parts.iter().find(|p| p.1 != n) {
        return Err(CoreError::invalid(format!(
            "{}: parts of different shardings ({} and {})",
            path.display(),
            parts[0].2.display(),
            p.2.display()
        )));
    }
    let present: Vec<usize> = parts.iter().map(|p| p.0).collect();
    let missing: Vec<String> = (1..=n)
        .filter(|k| !present.contains(k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(CoreError::invalid(format!(
            "{}: the store is incomplete: parts {} of {n} are missing; run distill-teach with \
             --shard K/{n} for each",
            path.display(),
            missing.join(", ")
        )));
    }
    let mut all: Option<SoftTargets> = None;
    for (k, _, p) in &parts {
        let part = read_one(p)?;
        if part.meta.shard.as_ref().map(|s| (s.part, s.parts)) != Some((*k, n)) {
            return Err(CoreError::format(
                p,
                format!("its metadata does not say it is part {k} of {n}"),
            ));
        }
        match &mut all {
            None => all = Some(part),
            Some(acc) => {
                if acc.meta.top_k != part.meta.top_k {
                    return Err(CoreError::format(
                        p,
                        format!(
                            "this part is a {} store but part {} is a {} store; parts of one \
                             store need the same layout: make every part again with the same \
                             --top-k (or none)",
                            part.meta.layout_name(),
                            parts[0].0,
                            acc.meta.layout_name()
                        ),
                    ));
                }
                let same = acc.meta.classes == part.meta.classes
                    && acc.meta.teachers == part.meta.teachers
                    && acc.meta.dataset == part.meta.dataset
                    && acc.meta.split == part.meta.split
                    && acc.meta.transform == part.meta.transform
                    && acc.meta.shard.as_ref().map(|s| s.total_rows)
                        == part.meta.shard.as_ref().map(|s| s.total_rows);
                if !same {
                    return Err(CoreError::format(
                        p,
                        "this part was made with other teachers, data or settings than part 1",
                    ));
                }
                acc.index.extend_from_slice(&part.index);
                acc.labels.extend_from_slice(&part.labels);
                for (a, b) in acc.logits.iter_mut().zip(part.logits) {
                    a.append(ndarray::Axis(0), b.view())
                        .map_err(|e| CoreError::invalid(e.to_string()))?;
                }
            }
        }
    }
    let mut all = all.ok_or_else(|| CoreError::invalid("no parts"))?;
    let total = all
        .meta
        .shard
        .as_ref()
        .map(|s| s.total_rows)
        .unwrap_or(all.len());
    if all.len() != total {
        return Err(CoreError::invalid(format!(
            "{}: the parts hold {} rows together, but the split has {total}",
            path.display(),
            all.len()
        )));
    }
    all.meta.shard = None;
    Ok(all)
}

/// The first `part-K-of-N.parquet` of a store folder (by name order).
pub(crate) fn first_part(dir: &Path) -> Result<PathBuf> {
    let mut parts: Vec<(usize, usize, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))? {
        let p = entry.map_err(|e| CoreError::io(dir, e))?.path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if let Some((k, n)) = parse_part_name(&name) {
            parts.push((k, n, p));
        }
    }
    parts.sort();
    parts.into_iter().next().map(|p| p.2).ok_or_else(|| {
        CoreError::invalid(format!(
            "{}: no part-K-of-N.parquet files in this folder",
            dir.display()
        ))
    })
}

fn parse_part_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (k, n) = rest.split_once("-of-")?;
    Some((k.parse().ok()?, n.parse().ok()?))
}
