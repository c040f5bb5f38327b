//! A stage ready to run: its command line, checked by the stage's own flag parser, and the files it
//! reads and writes, derived from its configuration.

mod errors;
mod files;

use std::path::{Component, Path, PathBuf};

use clap::Parser;
use serde_norway::Value;
use sha2::Digest;

use super::error::{PipelineError, Result};
use super::spec::{Document, Kind, StageSpec, scalar_string};
use errors::{arg_key, clap_error, config_error};
use files::files_of;
pub use files::normalize;

/// The configuration a stage runs with: a stage library's own `Config`, or a shell command.
#[derive(Debug)]
pub enum StageConfig {
    Train(Box<distill_train::Config>),
    Teach(Box<distill_teach::Config>),
    Cluster(Box<distill_cluster::Config>),
    Specialists(Box<distill_specialists::Config>),
    Eval(Box<distill_eval::Config>),
    Quantize(Box<distill_quantize::Config>),
    Report(Box<distill_report::Config>),
    Cmd(String),
}

/// A file or folder a stage reads.
#[derive(Clone, Debug)]
pub struct Dep {
    pub path: PathBuf,
    /// The key under the stage it comes from (`args.<flag>` or `deps`), for error messages.
    pub key: Option<String>,
    /// Read when present (a model's sidecar or external data); not an error when missing.
    pub optional: bool,
}

/// A file or folder a stage writes.
#[derive(Clone, Debug)]
pub struct Out {
    pub path: PathBuf,
    /// Must exist after the stage ran (a train stage's best model exists only with validation).
    pub required: bool,
    /// A folder (a `cmd` out written with a trailing `/`), created before the stage runs.
    pub folder: bool,
}

/// One stage, resolved.
#[derive(Debug)]
pub struct Stage {
    pub name: String,
    pub template: String,
    pub kind: Kind,
    /// The stage's command line (program name first) or, for `cmd`, the shell command.
    pub argv: Vec<String>,
    pub config: StageConfig,
    pub deps: Vec<Dep>,
    pub outs: Vec<Out>,
    /// SHA-256 of the kind and the command line, without `--resume` and `--max-steps`, which
    /// change how a training run proceeds but not what it produces.
    pub args_hash: String,
}

const UNHASHED_FLAGS: [&str; 2] = ["--resume", "--max-steps"];

impl Stage {
    /// Checks `spec` with its stage's flag parser and derives its inputs and outputs.
    pub fn resolve(doc: &Document, spec: &StageSpec) -> Result<Stage> {
        let argv = match (&spec.cmd, spec.kind) {
            (Some(cmd), Kind::Cmd) => vec![cmd.clone()],
            _ => deprecated_spellings(spec, command_line(doc, spec)?),
        };
        let config = match spec.kind {
            Kind::Train => StageConfig::Train(Box::new(
                distill_train::cli::Args::try_parse_from(&argv)
                    .map_err(|e| clap_error(doc, spec, e))?
                    .into_config()
                    .map_err(|e| config_error(doc, spec, e.to_string()))?,
            )),
            Kind::Teach => StageConfig::Teach(Box::new(
                distill_teach::cli::Args::parse_from_args(&argv)
                    .map_err(|e| clap_error(doc, spec, e))?
                    .into_config()
                    .map_err(|e| config_error(doc, spec, e.to_string()))?,
            )),
            Kind::Cluster => StageConfig::Cluster(Box::new(
                distill_cluster::cli::Args::try_parse_from(&argv)
                    .map_err(|e| clap_error(doc, spec, e))?
                    .into_config()
                    .map_err(|e| config_error(doc, spec, e.to_string()))?,
            )),
            Kind::Specialists => StageConfig::Specialists(Box::new(
                distill_specialists::cli::Args::try_parse_from(&argv)
                    .map_err(|e| clap_error(doc, spec, e))?
                    .into_config()
                    .map_err(|e| config_error(doc, spec, e.to_string()))?,
            )),
            Kind::Eval => StageConfig::Eval(Box::new(
                distill_eval::cli::Args::parse_from_args(&argv)
                    .map_err(|e| clap_error(doc, spec, e))?
                    .into_config()
                    .map_err(|e| config_error(doc, spec, e.to_string()))?,
            )),
            Kind::Quantize => StageConfig::Quantize(Box::new(
                distill_quantize::cli::Args::try_parse_from(&argv)
                    .map_err(|e| clap_error(doc, spec, e))?
                    .into_config()
                    .map_err(|e| config_error(doc, spec, e.to_string()))?,
            )),
            Kind::Report => StageConfig::Report(Box::new(
                distill_report::cli::Args::parse_from_args(&argv)
                    .map_err(|e| clap_error(doc, spec, e))?
                    .into_config()
                    .map_err(|e| config_error(doc, spec, e.to_string()))?,
            )),
            Kind::Cmd => StageConfig::Cmd(spec.cmd.clone().unwrap_or_default()),
        };
        check_values(&config).map_err(|e| config_error(doc, spec, e))?;
        let (mut deps, mut outs) = files_of(spec, &config);
        deps.extend(spec.deps.iter().map(|d| Dep {
            path: normalize(Path::new(d)),
            key: Some("deps".into()),
            optional: false,
        }));
        outs.extend(spec.outs.iter().map(|o| Out {
            path: normalize(Path::new(o)),
            required: true,
            folder: o.ends_with('/'),
        }));
        let paths = deps
            .iter()
            .map(|d| (&d.path, "an input"))
            .chain(outs.iter().map(|o| (&o.path, "an output")));
        for (path, what) in paths {
            let text = path.as_os_str().as_encoded_bytes();
            let why = if text.contains(&0) {
                "holds a NUL byte, which no file name can"
            } else if text.is_empty() {
                "is the working folder itself, which holds the pipeline file and every stage's files"
            } else if distill_core::atomic::resolve(path).parent().is_none() {
                "is the root folder: hashing or writing it means the whole file system"
            } else {
                continue;
            };
            return Err(doc.error(
                &["stages", &spec.template],
                format!("stage {}: {what}, {:?}, {why}", spec.name, path),
                "name the files or folders the stage reads and writes",
            ));
        }
        let dep_places: Vec<distill_core::atomic::Place> = deps
            .iter()
            .map(|d| distill_core::atomic::Place::of(&d.path))
            .collect();
        if let Some(both) = outs.iter().find(|o| {
            let place = distill_core::atomic::Place::of(&o.path);
            dep_places
                .iter()
                .any(|d| place.overlap(d) != distill_core::atomic::Overlap::None)
        }) {
            return Err(doc.error(
                &["stages", &spec.template],
                format!(
                    "stage {}: {} is both an input and an output (or one holds the other); a \
                     stage that rewrites its own input destroys it and is never up to date",
                    spec.name,
                    both.path.display()
                ),
                "write the result to another file, and read that one downstream",
            ));
        }
        let mut hasher = sha2::Sha256::new();
        hasher.update(spec.kind.name());
        for a in &argv {
            if UNHASHED_FLAGS
                .iter()
                .any(|f| a == f || a.starts_with(&format!("{f}=")))
            {
                continue;
            }
            hasher.update([0u8]);
            hasher.update(a);
        }
        Ok(Stage {
            name: spec.name.clone(),
            template: spec.template.clone(),
            kind: spec.kind,
            argv,
            config,
            deps,
            outs,
            args_hash: distill_core::hex(&hasher.finalize()),
        })
    }

    /// The command line as a person would type it.
    pub fn display_command(&self) -> String {
        match self.kind {
            Kind::Cmd => self.argv.join(" "),
            _ => self
                .argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./,:+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `args:` as a command line: `key: v` is `--key=v`, a list repeats the flag, `true` is the bare
/// flag, `false` and null leave it out, and a list item `{path: P, k: v}` is `--key=P --k=v` (a
/// teacher with its own settings).
/// `argv` with the old spellings of flags and values replaced by the new ones (the table of
/// `distill_cli::deprecated`), with a note naming the stage for each.
fn deprecated_spellings(spec: &StageSpec, argv: Vec<String>) -> Vec<String> {
    let binary = argv.first().cloned().unwrap_or_default();
    let (argv, notes) =
        distill_cli::deprecated::rewrite(&binary, argv.into_iter().map(Into::into).collect());
    for n in notes {
        eprintln!("note: stage {}: {n}", spec.name);
    }
    argv.into_iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

fn command_line(doc: &Document, spec: &StageSpec) -> Result<Vec<String>> {
    let mut argv = vec![format!("distill-{}", spec.kind.name())];
    for (key, value) in &spec.args {
        let flag = format!("--{}", key.replace('_', "-"));
        let wrong = |what: &str| {
            doc.error(
                &["stages", &spec.template, "args", key],
                format!("stage {}: `{key}` {what}", spec.name),
                "write a number, a string, true/false, or a list of them to repeat the flag",
            )
        };
        let items: Vec<&Value> = match value {
            Value::Sequence(s) => s.iter().collect(),
            Value::Mapping(_) => return Err(wrong("is a mapping, not a flag value")),
            v => vec![v],
        };
        for item in items {
            match item {
                Value::Null | Value::Bool(false) => {}
                Value::Bool(true) => argv.push(flag.clone()),
                Value::Mapping(m) => {
                    let Some(path) = m.get("path").and_then(scalar_string) else {
                        return Err(wrong(
                            "has a list item that is a mapping without `path:` (write `- path: model.onnx` then its settings)",
                        ));
                    };
                    argv.push(format!("{flag}={path}"));
                    for (k, v) in m {
                        let k = scalar_string(k).unwrap_or_default();
                        if k == "path" {
                            continue;
                        }
                        let sub = format!("--{}", k.replace('_', "-"));
                        match v {
                            Value::Null | Value::Bool(false) => {}
                            Value::Bool(true) => argv.push(sub),
                            v => match scalar_string(v) {
                                Some(s) => argv.push(format!("{sub}={s}")),
                                None => return Err(wrong("has a setting that is not a scalar")),
                            },
                        }
                    }
                }
                v => match scalar_string(v) {
                    Some(s) => argv.push(format!("{flag}={s}")),
                    None => return Err(wrong("has a value that is not a scalar")),
                },
            }
        }
    }
    Ok(argv)
}

/// A stage's own checks of its values (not of its files, which upstream stages may still have to
/// write), so that a bad value is refused before anything runs.
fn check_values(config: &StageConfig) -> std::result::Result<(), String> {
    match config {
        StageConfig::Train(c) => c.validate().map_err(|e| e.to_string()),
        StageConfig::Teach(c) => c.check_values().map_err(|e| e.to_string()),
        StageConfig::Cluster(c) => c.check_values().map_err(|e| e.to_string()),
        StageConfig::Eval(c) => distill_eval::check_values(c).map_err(|e| e.to_string()),
        StageConfig::Specialists(c) => c.check_values().map_err(|e| e.to_string()),
        StageConfig::Quantize(c) => distill_quantize::check_values(c).map_err(|e| e.to_string()),
        StageConfig::Report(_) => Ok(()),
        StageConfig::Cmd(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_compare_by_their_components() {
        assert_eq!(normalize(Path::new("./a/b/../c/")), PathBuf::from("a/c"));
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
    }

    #[test]
    fn external_data_files_are_found_in_the_fixture() {
        let model = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/teachers/external_data/model.onnx"
        );
        let bytes = std::fs::read(model).unwrap();
        assert_eq!(
            distill_runtime::external_data_locations(&bytes),
            ["model.onnx.data"]
        );
        let torch = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/teachers/torchscript_cnn.onnx"
        );
        assert!(
            distill_runtime::external_data_locations(&std::fs::read(torch).unwrap()).is_empty()
        );
    }
}
