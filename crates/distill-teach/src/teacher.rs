use std::collections::HashSet;

use distill_data::Dataset;
use distill_runtime::{ModelSpec, OnnxModel, OutputKind, Provider};
use distill_store::TeacherMeta;
use ndarray::s;

use crate::{Result, TeachError, TeacherSpec};

/// Columns of the store that no teacher may take.
const RESERVED: [&str; 2] = ["index", "label"];

/// An opened teacher and what the store records about it.
pub(crate) struct Teacher {
    pub meta: TeacherMeta,
    pub model: OnnxModel,
    /// Every setting the model runs with ([`OnnxModel::settings_used`]), as JSON for the store.
    pub settings: serde_json::Value,
}

impl Teacher {
    /// Opens the model and hashes its file.
    pub fn load(
        spec: &TeacherSpec,
        name: &str,
        provider: Provider,
        threads: usize,
    ) -> Result<Self> {
        let model = OnnxModel::load(
            &ModelSpec::new(&spec.path).with_settings(spec.settings.clone()),
            provider,
            threads,
        )?;
        let kind = model.kind();
        let prob_floor = match kind {
            OutputKind::Logits => None,
            OutputKind::Probabilities => Some(0.0),
        };
        let meta = TeacherMeta {
            name: name.to_string(),
            path: spec.path.display().to_string(),
            sha256: distill_core::sha256_file(&spec.path)?,
            kind,
            prob_floor,
        };
        let settings = serde_json::to_value(model.settings_used()).map_err(|e| {
            distill_core::CoreError::invalid(format!(
                "{}: cannot record its settings: {e}",
                spec.path.display()
            ))
        })?;
        Ok(Teacher {
            meta,
            model,
            settings,
        })
    }
}

/// Each teacher's column name: its explicit name, else its file stem, made unique by appending `-2`,
/// `-3`, … in the order given. Explicit names must be unique and not reserved.
pub(crate) fn column_names(specs: &[TeacherSpec]) -> Result<Vec<String>> {
    let mut taken: HashSet<String> = HashSet::new();
    for spec in specs {
        if let Some(name) = &spec.name {
            let problem = if name.trim().is_empty() {
                Some("an empty name; give a name with letters in it".to_string())
            } else if RESERVED.contains(&name.as_str()) {
                Some(format!(
                    "the name '{name}' is a reserved column of the store; choose another with --name"
                ))
            } else if !taken.insert(name.clone()) {
                Some(format!(
                    "another teacher is also named '{name}'; give each teacher a distinct --name"
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(TeachError::Name {
                    path: spec.path.clone(),
                    message,
                });
            }
        }
    }
    let models: Vec<(&std::path::Path, Option<&str>)> = specs
        .iter()
        .map(|s| (s.path.as_path(), s.name.as_deref()))
        .collect();
    let names = distill_core::names::model_names(&models, &RESERVED);
    Ok(names)
}

/// Checks, before anything is written, that every teacher takes rows of the data's width and scores
/// exactly the data set's classes. A teacher whose class count the model does not declare is run once
/// on the first row to learn it.
pub(crate) fn check(teachers: &mut [Teacher], ds: &Dataset) -> Result<()> {
    for t in teachers.iter_mut() {
        t.model.expect_input_width(ds.width())?;
        let classes = match t.model.classes() {
            Some(c) => c,
            None => t.model.run(ds.features.slice(s![..1, ..]))?.ncols(),
        };
        if classes != ds.classes {
            return Err(TeachError::Classes {
                teacher: t.meta.name.clone(),
                path: t.model.path().to_path_buf(),
                output: t.model.io_names().1.to_string(),
                expected: ds.classes,
                found: classes,
                dataset: ds.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, name: Option<&str>) -> TeacherSpec {
        TeacherSpec {
            name: name.map(String::from),
            ..TeacherSpec::new(path)
        }
    }

    #[test]
    fn stems_are_deduplicated_and_explicit_names_kept() {
        let names = column_names(&[
            spec("x/model.onnx", None),
            spec("y/model.onnx", None),
            spec("z/model.onnx", Some("model-2")),
            spec("label.onnx", None),
        ])
        .unwrap();
        assert_eq!(names, ["model", "model-3", "model-2", "label-2"]);
    }

    #[test]
    fn duplicate_or_reserved_explicit_names_are_refused() {
        let e = column_names(&[spec("a.onnx", Some("t")), spec("b.onnx", Some("t"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.onnx") && e.contains("also named 't'"), "{e}");
        let e = column_names(&[spec("a.onnx", Some("index"))])
            .unwrap_err()
            .to_string();
        assert!(e.contains("reserved"), "{e}");
    }
}
