//! The pipeline file: `vars`, `stages` and `wdir`, read from YAML, checked, with `foreach` expanded
//! and `${...}` substituted.

mod foreach;
mod vars;

use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::error::{PipelineError, Result};
use super::locate::{Outline, Pos, pos_of_offset};

pub use vars::parse_set;

/// What a stage runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Train,
    Teach,
    Cluster,
    Specialists,
    Eval,
    /// An int8 or fp16 version of a model.
    Quantize,
    /// The HTML report of what the other stages wrote.
    Report,
    /// Any shell command, with explicit `deps` and `outs`.
    Cmd,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Train,
        Kind::Teach,
        Kind::Cluster,
        Kind::Specialists,
        Kind::Eval,
        Kind::Quantize,
        Kind::Report,
        Kind::Cmd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Train => "train",
            Kind::Teach => "teach",
            Kind::Cluster => "cluster",
            Kind::Specialists => "specialists",
            Kind::Eval => "eval",
            Kind::Quantize => "quantize",
            Kind::Report => "report",
            Kind::Cmd => "cmd",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One stage as written, after `foreach` expansion and substitution.
#[derive(Clone, Debug)]
pub struct StageSpec {
    /// `name`, or `name@<item>` for a `foreach` expansion.
    pub name: String,
    /// The key of the stage in the file.
    pub template: String,
    pub kind: Kind,
    /// Flag name as written, and its value.
    pub args: Vec<(String, Value)>,
    pub cmd: Option<String>,
    pub deps: Vec<String>,
    pub outs: Vec<String>,
}

/// A parsed pipeline file, with what is needed to point at its lines.
#[derive(Debug)]
pub struct Document {
    pub file: PathBuf,
    pub text: String,
    pub outline: Outline,
    /// The folder every relative path in the stages is taken from.
    pub wdir: PathBuf,
    pub stages: Vec<StageSpec>,
}

const TOP_KEYS: [&str; 3] = ["vars", "stages", "wdir"];
const STAGE_KEYS: [&str; 7] = ["kind", "args", "foreach", "cmd", "deps", "outs", "desc"];

impl Document {
    /// Reads and checks the pipeline at `file`.
    pub fn read(file: &Path) -> Result<Document> {
        Document::read_with(file, &[])
    }

    /// The folder the stages' paths are relative to: `wdir`, taken relative to the folder of the
    /// pipeline file `file` (that folder itself when there is no `wdir`). It must exist.
    pub fn working_folder(&self, file: &Path) -> Result<PathBuf> {
        let file_abs = std::path::absolute(file).map_err(|e| PipelineError::io(file, e))?;
        let base = file_abs.parent().unwrap_or(Path::new("/")).to_path_buf();
        let wdir = if self.wdir.as_os_str().is_empty() {
            base
        } else {
            super::stage::normalize(&base.join(&self.wdir))
        };
        if !wdir.is_dir() {
            let what = match std::fs::metadata(&wdir) {
                Ok(m) => format!(
                    "the working folder {} is {}, not a folder",
                    wdir.display(),
                    distill_core::input::kind_of(&m)
                ),
                Err(_) => format!("the working folder {} does not exist", wdir.display()),
            };
            return Err(self.error(
                &["wdir"],
                what,
                "wdir is taken relative to the pipeline file's folder",
            ));
        }
        Ok(wdir)
    }

    /// Reads and checks the pipeline at `file`, with `vars` overridden by `set` (`distill run
    /// --set NAME=VALUE`: each value is read as YAML, so `4` is a number and `[1, 2]` a list).
    pub fn read_with(file: &Path, set: &[(String, String)]) -> Result<Document> {
        // A pipeline file that is missing, a folder, a device or FIFO, larger than
        // `distill_core::input::MAX_TEXT_BYTES` or not UTF-8 text is the user's mistake (exit 2).
        let refuse = |why: String| {
            PipelineError::Usage(format!(
                "{}: cannot read the pipeline: {why}",
                file.display()
            ))
        };
        let meta = std::fs::metadata(file).map_err(|e| {
            refuse(if e.kind() == std::io::ErrorKind::NotFound {
                "no such file; the shipped pipelines are in pipelines/".to_string()
            } else {
                e.to_string()
            })
        })?;
        if meta.is_dir() {
            return Err(refuse(
                "it is a folder; name the pipeline's YAML file".to_string(),
            ));
        }
        if !meta.is_file() {
            return Err(refuse(format!(
                "it is {}, not a regular file; a pipeline is a YAML file",
                distill_core::input::kind_of(&meta)
            )));
        }
        let bytes =
            distill_core::input::read("the pipeline", file, distill_core::input::MAX_TEXT_BYTES)
                .map_err(|e| match e {
                    distill_core::CoreError::Io { source, .. } => refuse(source.to_string()),
                    distill_core::CoreError::Format { message, .. } => refuse(message),
                    other => refuse(other.to_string()),
                })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| refuse("it is not UTF-8 text; a pipeline is a YAML file".to_string()))?;
        Document::parse_with(file, text, set)
    }

    /// Parses `text` (the contents of `file`).
    pub fn parse(file: &Path, text: String) -> Result<Document> {
        Document::parse_with(file, text, &[])
    }

    /// Parses `text` (the contents of `file`) with `vars` overridden by `set`.
    pub fn parse_with(file: &Path, text: String, set: &[(String, String)]) -> Result<Document> {
        let outline = Outline::scan(&text);
        let mut doc = Document {
            file: file.to_path_buf(),
            text,
            outline,
            wdir: PathBuf::new(),
            stages: Vec::new(),
        };
        let root: Value = match serde_norway::from_str(&doc.text) {
            Ok(v) => v,
            Err(e) => {
                let pos = e
                    .location()
                    .map(|l| Pos {
                        line: l.line(),
                        column: l.column(),
                    })
                    .unwrap_or_default();
                let mut message = e.to_string();
                if let Some(i) = message.find(" at line ") {
                    message.truncate(i);
                }
                return Err(doc.error_at(
                    pos,
                    format!("not valid YAML: {message}"),
                    "check the indentation, and quote values that contain ': ', '#', or '${...}' inside [ ] or { }",
                ));
            }
        };
        let Value::Mapping(root) = root else {
            return Err(doc.error(
                &[],
                "a pipeline is a mapping with `stages:` (and optionally `vars:` and `wdir:`)",
                "start the file with `stages:`",
            ));
        };
        for key in root.keys() {
            let k = key_str(key);
            if !TOP_KEYS.contains(&k.as_str()) {
                return Err(doc.error(
                    &[&k],
                    format!("unknown top-level key `{k}`"),
                    &format!("the top-level keys are {}", TOP_KEYS.join(", ")),
                ));
            }
        }
        let vars = match root.get("vars") {
            None | Some(Value::Null) if set.is_empty() => Mapping::new(),
            None | Some(Value::Null) => doc.resolve_vars(&Mapping::new(), set)?,
            Some(Value::Mapping(m)) => doc.resolve_vars(m, set)?,
            Some(_) => {
                return Err(doc.error(
                    &["vars"],
                    "`vars` must be a mapping of names to values",
                    "write `vars:` then lines like `  out: work/mnist`",
                ));
            }
        };
        doc.wdir = match root.get("wdir") {
            None | Some(Value::Null) => PathBuf::new(),
            Some(Value::String(s)) => {
                let s = doc.subst_str(s, &vars, None, 0)?;
                PathBuf::from(scalar_string(&s).unwrap_or_default())
            }
            Some(_) => {
                return Err(doc.error(
                    &["wdir"],
                    "`wdir` must be a folder path",
                    "it is taken relative to the pipeline file's folder",
                ));
            }
        };
        let stages = match root.get("stages") {
            Some(Value::Mapping(m)) if !m.is_empty() => m.clone(),
            _ => {
                return Err(doc.error(
                    &["stages"],
                    "the pipeline has no stages",
                    "add `stages:` with at least one named stage, each with a `kind:`",
                ));
            }
        };
        let mut expanded = Vec::new();
        for (key, value) in &stages {
            expanded.extend(doc.expand_stage(&key_str(key), value, &vars)?);
        }
        for (i, s) in expanded.iter().enumerate() {
            if expanded[..i].iter().any(|o| o.name == s.name) {
                return Err(doc.error(
                    &["stages", &s.template, "foreach"],
                    format!("two stages are named {}", s.name),
                    "give foreach distinct values",
                ));
            }
        }
        doc.stages = expanded;
        Ok(doc)
    }

    /// An error located at the key `path` (or the nearest enclosing key that was found).
    pub fn error(&self, path: &[&str], message: impl Into<String>, hint: &str) -> PipelineError {
        self.error_at(self.outline.find(path), message, hint)
    }

    pub fn error_at(&self, pos: Pos, message: impl Into<String>, hint: &str) -> PipelineError {
        PipelineError::Invalid {
            file: self.file.clone(),
            pos,
            message: message.into(),
            hint: hint.to_string(),
        }
    }
}

/// A scalar as the text a flag would take; `None` for lists, mappings and null.
pub fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar_string(&t.value),
        _ => None,
    }
}

fn key_str(k: &Value) -> String {
    scalar_string(k).unwrap_or_else(|| format!("{k:?}"))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The candidate nearest to `word` (Levenshtein distance, from `strsim`, which clap's own
/// suggestions use) when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vars::set_value;

    fn parse(text: &str) -> Result<Document> {
        Document::parse(Path::new("p.yaml"), text.to_string())
    }

    #[test]
    fn foreach_and_vars_expand() {
        let doc = parse(
            "vars:\n  out: w\n  seeds: [1, 2]\nstages:\n  t:\n    kind: train\n    foreach: ${seeds}\n    args:\n      seed: ${item}\n      out: ${out}/t-${item}.onnx\n",
        )
        .unwrap();
        let names: Vec<&str> = doc.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["t@1", "t@2"]);
        assert_eq!(doc.stages[1].args[0].1, Value::Number(2.into()));
        assert_eq!(doc.stages[1].args[1].1, Value::String("w/t-2.onnx".into()));
    }

    #[test]
    fn set_replaces_vars_before_they_are_used() {
        let text = "vars:\n  out: w\n  seeds: [1, 2]\n  dir: ${out}/x\nstages:\n  t:\n    kind: train\n    foreach: ${seeds}\n    args:\n      seed: ${item}\n      out: ${dir}/t-${item}.onnx\n";
        let set = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let doc = Document::parse_with(
            Path::new("p.yaml"),
            text.into(),
            &set(&[("seeds", "[3, 4, 5]"), ("out", "v"), ("out", "z")]),
        )
        .unwrap();
        let names: Vec<&str> = doc.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["t@3", "t@4", "t@5"]);
        assert_eq!(doc.stages[0].args[0].1, Value::Number(3.into()));
        // The last --set of a name wins; vars that use it see the new value.
        assert_eq!(
            doc.stages[0].args[1].1,
            Value::String("z/x/t-3.onnx".into())
        );
        assert_eq!(set_value("4"), Value::Number(4.into()));
        assert_eq!(set_value("0.5"), Value::Number(0.5.into()));
        assert_eq!(set_value("true"), Value::Bool(true));
        assert_eq!(set_value("a: b: c"), Value::String("a: b: c".into()));
        assert_eq!(set_value(""), Value::String("".into()));
        assert_eq!(parse_set("t=4").unwrap(), ("t".into(), "4".into()));
        assert_eq!(parse_set("t=a=b").unwrap(), ("t".into(), "a=b".into()));
        assert!(parse_set("t").is_err() && parse_set("=4").is_err());
        let e = Document::parse_with(Path::new("p.yaml"), text.into(), &set(&[("seed", "1")]))
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.contains("no variable `seed`")
                && e.contains("did you mean `seeds`")
                && e.contains("its vars are out, seeds, dir"),
            "{e}"
        );
    }

    #[test]
    fn foreach_over_mappings_uses_fields() {
        let doc = parse(
            "stages:\n  t:\n    kind: train\n    foreach:\n      - {seed: 3, h: 32}\n      - {seed: 4, h: 64}\n    args:\n      hidden: ${item.h}\n      out: m-${item.seed}.onnx\n",
        )
        .unwrap();
        assert_eq!(doc.stages[1].name, "t@1");
        assert_eq!(doc.stages[1].args[1].1, Value::String("m-4.onnx".into()));
    }

    #[test]
    fn undefined_variables_point_at_their_use() {
        let e = parse("stages:\n  a:\n    kind: cmd\n    cmd: echo hi\n  b:\n    kind: train\n    args:\n      out: ${nope}/x.onnx\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.yaml:8:12: undefined variable `nope`"),
            "{e}"
        );
    }

    #[test]
    fn unknown_kinds_are_suggested() {
        let e = parse("stages:\n  a:\n    kind: trian\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("p.yaml:3:5: stage a: unknown kind `trian`"),
            "{e}"
        );
        assert!(e.contains("did you mean `train`?"), "{e}");
    }

    #[test]
    fn yaml_syntax_errors_carry_their_location() {
        let e = parse("stages:\n  a:\n    kind: train\n   args: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p.yaml:4:"), "{e}");
    }
}
