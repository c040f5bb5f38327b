//! The `distill` command: the YAML pipeline runner ([`pipeline`]), the stage tools under one
//! name ([`cli`]), and the table of evaluations across pipelines ([`metrics`]).

pub mod cli;
pub mod metrics;
pub mod pipeline;
