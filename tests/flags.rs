//! The flag vocabulary: every flag of every stage (and of `distill run`, `status`, `metrics`) says
//! what it does, and `distill <stage> --help` names the command as it was typed.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use clap::CommandFactory;

/// Every command line of the tool, by the name a user types.
fn commands() -> Vec<(&'static str, clap::Command)> {
    vec![
        ("distill train", distill_train::cli::Args::command()),
        ("distill teach", distill_teach::cli::Args::command()),
        ("distill cluster", distill_cluster::cli::Args::command()),
        (
            "distill specialists",
            distill_specialists::cli::Args::command(),
        ),
        ("distill eval", distill_eval::cli::Args::command()),
        ("distill quantize", distill_quantize::cli::Args::command()),
        ("distill report", distill_report::cli::Args::command()),
        ("distill run", distill::cli::RunArgs::command()),
        ("distill status", distill::cli::StatusArgs::command()),
        ("distill metrics", distill::cli::MetricsArgs::command()),
    ]
}

#[test]
fn every_flag_has_help_text() {
    let mut blank = Vec::new();
    for (name, cmd) in commands() {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                blank.push(format!("{name} --{}", arg.get_long().unwrap_or(id)));
            }
        }
    }
    assert!(blank.is_empty(), "flags without help text: {blank:?}");
}

#[test]
fn stage_help_names_the_command_as_typed() {
    for stage in [
        "train",
        "teach",
        "cluster",
        "specialists",
        "eval",
        "quantize",
        "report",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_distill"))
            .args([stage, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "distill {stage} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("Usage: distill {stage} ")),
            "distill {stage} --help:\n{text}"
        );
    }
}
