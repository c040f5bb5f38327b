//! Errors in a stage's flags, located at the key under `args:` that gave the flag.

use super::*;
use clap::error::{ContextKind, ContextValue, ErrorKind};

/// The YAML key (as written) under `args:` for a flag of the stage's parser, e.g. `soft_targets`.
pub(super) fn arg_key<'a>(spec: &'a StageSpec, flag: &str) -> Option<&'a str> {
    let flag = flag.trim_start_matches('-');
    spec.args
        .iter()
        .map(|(k, _)| k.as_str())
        .find(|k| k.replace('_', "-") == flag)
}

pub(super) fn clap_error(doc: &Document, spec: &StageSpec, e: clap::Error) -> PipelineError {
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(
            s.trim_start_matches('-')
                .split([' ', '='])
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        Some(ContextValue::Strings(v)) => v.first().map(|s| {
            s.trim_start_matches('-')
                .split([' ', '='])
                .next()
                .unwrap_or_default()
                .to_string()
        }),
        _ => None,
    };
    let rendered = e.to_string();
    let first = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    let kind = spec.kind.name();
    let key = flag.as_deref().and_then(|f| arg_key(spec, f));
    let path: Vec<&str> = match key {
        Some(k) => vec!["stages", &spec.template, "args", k],
        None => vec!["stages", &spec.template, "args"],
    };
    let suggested = match e.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(s)) => Some(s.trim_start_matches('-').to_string()),
        _ => None,
    };
    let (message, hint) = match e.kind() {
        ErrorKind::UnknownArgument => (
            format!(
                "stage {} ({kind}) has no flag `{}`",
                spec.name,
                key.unwrap_or(flag.as_deref().unwrap_or("?"))
            ),
            match suggested {
                Some(s) => format!("did you mean `{s}`? (`distill {kind} --help` lists the flags)"),
                None => format!("`distill {kind} --help` lists the flags"),
            },
        ),
        ErrorKind::MissingRequiredArgument => (
            format!("stage {} ({kind}): {first}", spec.name),
            format!("add the flag under `args:` (`distill {kind} --help` lists the flags)"),
        ),
        _ => (
            format!("stage {} ({kind}): {first}", spec.name),
            format!("`distill {kind} --help` describes each flag's values"),
        ),
    };
    doc.error(&path, message, &hint)
}

/// An error from a stage's `into_config`: located at the flag it names, if it names one.
pub(super) fn config_error(doc: &Document, spec: &StageSpec, message: String) -> PipelineError {
    let key = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| w.starts_with("--"))
        .find_map(|w| arg_key(spec, w));
    let path: Vec<&str> = match key {
        Some(k) => vec!["stages", &spec.template, "args", k],
        None => vec!["stages", &spec.template, "args"],
    };
    doc.error(
        &path,
        format!("stage {} ({}): {message}", spec.name, spec.kind.name()),
        &format!("`distill {} --help` describes each flag", spec.kind.name()),
    )
}
