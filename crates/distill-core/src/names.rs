//! The name a model goes by when none is given: the same in the store's columns (distill-teach)
//! and in evaluation tables and `metrics.json` (distill-eval), so the two agree.

use std::collections::HashSet;
use std::path::Path;

/// Each model's name: its explicit name where one is given, else its file stem (`model` for a
/// path without one), made unique by appending `-2`, `-3`, … in the order given, avoiding the
/// explicit names and `reserved`. Explicit names are taken as they are (callers check them).
pub fn model_names(models: &[(&Path, Option<&str>)], reserved: &[&str]) -> Vec<String> {
    let mut taken: HashSet<String> = models
        .iter()
        .filter_map(|(_, n)| n.map(str::to_string))
        .collect();
    let mut names = Vec::with_capacity(models.len());
    for (path, explicit) in models {
        if let Some(name) = explicit {
            names.push(name.to_string());
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "model".to_string());
        let mut name = stem.clone();
        let mut k = 2;
        while taken.contains(&name) || reserved.contains(&name.as_str()) {
            name = format!("{stem}-{k}");
            k += 1;
        }
        taken.insert(name.clone());
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_made_unique_around_explicit_and_reserved_names() {
        let p = |s: &'static str| Path::new(s);
        let names = model_names(
            &[
                (p("a/t.onnx"), None),
                (p("b/t.onnx"), None),
                (p("c/x.onnx"), Some("t-3")),
                (p("d/t.onnx"), None),
                (p("e/index.onnx"), None),
            ],
            &["index", "label"],
        );
        assert_eq!(names, ["t", "t-2", "t-3", "t-4", "index-2"]);
    }
}
