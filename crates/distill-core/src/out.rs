//! Printing a stage's report on stdout without panicking when the reader has gone: a pipe into
//! `head -1` closes after the first line, and `println!` would then panic ("Broken pipe", exit
//! 101). Here the rest of the output is dropped and the program ends as it would have.

use std::fmt::Display;
use std::io::Write;

/// Writes `text` and a newline to stdout and flushes. A closed stdout (a broken pipe) ends the
/// output quietly; so does any other write error, which has no better place to be told.
pub fn print_line(text: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Writes `text` as it is (no newline added) to stdout and flushes, as [`print_line`] does.
pub fn print(text: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{text}").and_then(|()| out.flush());
}
