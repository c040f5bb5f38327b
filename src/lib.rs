//! The `distill` command: the YAML pipeline runner ([`pipeline`]) and the stage tools under one
//! name ([`cli`]).

pub mod cli;
pub mod pipeline;
