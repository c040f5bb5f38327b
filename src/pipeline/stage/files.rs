//! The files a stage reads and writes, derived from its configuration (and its models' sidecars).

use super::*;

/// The inputs and outputs a built-in stage's configuration names.
pub(super) fn files_of(spec: &StageSpec, config: &StageConfig) -> (Vec<Dep>, Vec<Out>) {
    let mut deps = Vec::new();
    let mut outs = Vec::new();
    let key = |flag: &str| arg_key(spec, flag).map(|k| format!("args.{k}"));
    let mut dep = |path: &Path, flag: &str| {
        deps.push(Dep {
            path: normalize(path),
            key: key(flag),
            optional: false,
        })
    };
    let data_dep = |data: &str, deps: &mut Vec<Dep>| {
        if let Some(path) = distill_data::DataSource::input_path(data) {
            deps.push(Dep {
                path: normalize(&path),
                key: key("data"),
                optional: false,
            });
        }
    };
    let out = |path: PathBuf, required: bool| Out {
        path: normalize(&path),
        required,
        folder: false,
    };
    match config {
        StageConfig::Train(c) => {
            if let Some(s) = &c.soft.soft_targets {
                dep(s, "soft-targets");
            }
            data_dep(&c.selection.data, &mut deps);
            let p = c.paths();
            outs.push(out(p.model, true));
            outs.push(out(p.metrics, true));
            outs.push(out(p.checkpoint, true));
            outs.push(out(p.best, false));
        }
        StageConfig::Teach(c) => {
            for t in &c.teachers {
                dep(&t.path, "model");
            }
            data_dep(&c.selection.data, &mut deps);
            let models: Vec<PathBuf> = c.teachers.iter().map(|t| t.path.clone()).collect();
            deps.extend(model_extras(&models));
            outs.push(out(
                match c.shard {
                    Some((k, n)) => distill_store::part_path(&c.out, k, n),
                    None => c.out.clone(),
                },
                true,
            ));
        }
        StageConfig::Cluster(c) => {
            dep(&c.soft_targets, "soft-targets");
            outs.push(out(c.out.clone(), true));
            outs.push(out(c.heatmap_path(), true));
        }
        StageConfig::Specialists(c) => {
            dep(&c.subsets, "subsets");
            dep(&c.generalist, "generalist");
            if let Some(s) = &c.soft.soft_targets {
                dep(s, "soft-targets");
            }
            data_dep(&c.selection.data, &mut deps);
            outs.push(Out {
                path: normalize(&c.out),
                required: true,
                folder: true,
            });
        }
        StageConfig::Eval(c) => {
            for m in &c.models {
                let flag = if spec_lists(spec, "teacher", &m.path) {
                    "teacher"
                } else {
                    "model"
                };
                dep(&m.path, flag);
            }
            if let Some(s) = &c.specialists {
                // The manifest records every specialist file's SHA-256, so it changes with them.
                let flag = if arg_key(spec, "manifest").is_some() {
                    "manifest"
                } else {
                    "specialists"
                };
                dep(&s.manifest, flag);
            }
            if let Some(store) = &c.teachers_of {
                dep(store, "teachers-of");
            }
            data_dep(&c.selection.data, &mut deps);
            let models: Vec<PathBuf> = c.models.iter().map(|m| m.path.clone()).collect();
            deps.extend(model_extras(&models));
            if let Some(o) = &c.out {
                outs.push(out(o.clone(), true));
            }
            if let Some((p, _)) = &c.predictions {
                outs.push(out(p.clone(), true));
            }
        }
        StageConfig::Quantize(c) => {
            dep(&c.model, "model");
            data_dep(&c.selection.data, &mut deps);
            deps.extend(model_extras(std::slice::from_ref(&c.model)));
            outs.push(out(c.out.clone(), true));
        }
        StageConfig::Report(c) => {
            // Every input is optional: a report of a partial pipeline says what is missing.
            let mut optional = |path: &Path, flag: &str| {
                deps.push(Dep {
                    path: normalize(path),
                    key: key(flag),
                    optional: true,
                })
            };
            for (p, flag) in [
                (&c.metrics, "metrics"),
                (
                    &c.specialists,
                    if arg_key(spec, "subsets").is_some() {
                        "subsets"
                    } else {
                        "specialists"
                    },
                ),
                (&c.manifest, "manifest"),
                (&c.store, "store"),
                (&c.pipeline, "pipeline"),
            ] {
                if let Some(p) = p {
                    optional(p, flag);
                }
            }
            for p in &c.train_logs {
                optional(p, "train-log");
            }
            outs.push(out(c.out.clone(), true));
        }
        StageConfig::Cmd(_) => {}
    }
    (deps, outs)
}

pub(super) fn spec_lists(spec: &StageSpec, flag: &str, path: &Path) -> bool {
    let Some(key) = arg_key(spec, flag) else {
        return false;
    };
    let matches = |v: &Value| {
        let s = match v {
            Value::Mapping(m) => m.get("path").and_then(scalar_string),
            v => scalar_string(v),
        };
        s.is_some_and(|s| Path::new(&s) == path)
    };
    spec.args.iter().any(|(k, v)| {
        k == key
            && match v {
                Value::Sequence(s) => s.iter().any(matches),
                v => matches(v),
            }
    })
}

/// A model's sidecar (`model.onnx.yaml`) and external data files: read by the stage when present
/// (as [`distill_core::atomic::model_files`] finds them).
pub(super) fn model_extras(models: &[PathBuf]) -> Vec<Dep> {
    models
        .iter()
        .flat_map(|m| distill_core::atomic::model_files(m).into_iter().skip(1))
        .map(|(_, path)| Dep {
            path: normalize(&path),
            key: None,
            optional: true,
        })
        .collect()
}

/// `path` without `.` components and with `a/..` folded, as written otherwise (relative stays
/// relative), so that two spellings of one file compare equal.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
