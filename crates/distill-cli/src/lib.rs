//! What the stage command lines share: the data-selection flags ([`DataArgs`], [`RowArgs`]), the progress
//! flags ([`ProgressArgs`]), the old spellings still accepted ([`deprecated`]) and the
//! parse → run → report → exit-code driver ([`run_main`]).

pub mod deprecated;

use std::ffi::OsString;
use std::fmt::Display;
use std::process::ExitCode;

use clap::Parser;
use distill_core::CoreError;
use distill_data::{ClassFilter, Selection, Split, parse_class_list};
pub use distill_progress::{Mode, Progress, Verbosity};

/// The flags that choose a stage's rows: `--data`, `--split`, `--limit`, `--only-classes` and
/// `--exclude-classes`. Flatten it into a stage's `Args` with `#[command(flatten)]`.
///
/// `--split` defaults to `train`; a stage that reads another split by default overrides it on
/// its command, e.g. `#[command(mut_arg("split", |a| a.default_value("test")))]`.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// The data: a folder of MNIST IDX files, a folder with train.parquet/test.parquet, a Parquet
    /// file, or synthetic:... A relative path (the default too) is looked up from the working
    /// folder.
    #[arg(long, value_name = "PATH", default_value = "data/mnist")]
    pub data: String,
    /// The split: train or test.
    #[arg(long, value_name = "train|test", default_value = "train")]
    pub split: Split,
    #[command(flatten)]
    pub rows: RowArgs,
}

impl DataArgs {
    /// The selection these flags describe; fails, naming the flag, on a class list that is not
    /// comma-separated class numbers.
    pub fn selection(&self) -> Result<Selection, CoreError> {
        Ok(Selection {
            data: self.data.clone(),
            split: self.split,
            limit: self.rows.limit,
            classes: self.rows.classes()?,
        })
    }
}

/// The flags that choose rows by position and class: `--limit`, `--only-classes` and
/// `--exclude-classes`. Part of [`DataArgs`]; a stage that reads its rows from a soft-target store
/// rather than a data set (distill-cluster, whose data set and split are the store's) flattens
/// these alone.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RowArgs {
    /// Keep only the first N rows of the split (before the class filters).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Keep only the rows of these classes, e.g. 7,8.
    #[arg(long, value_name = "CLASSES")]
    pub only_classes: Option<String>,
    /// Drop the rows of these classes, e.g. 3.
    #[arg(long, value_name = "CLASSES")]
    pub exclude_classes: Option<String>,
}

impl RowArgs {
    /// The class filter of `--only-classes` and `--exclude-classes`; fails, naming the flag, on a
    /// class list that is not comma-separated class numbers.
    pub fn classes(&self) -> Result<ClassFilter, CoreError> {
        let class_list = |flag: &str, list: &Option<String>| {
            list.as_deref()
                .map(|s| {
                    parse_class_list(s).map_err(|e| CoreError::invalid(format!("{flag}: {e}")))
                })
                .transpose()
        };
        Ok(ClassFilter {
            only: class_list("--only-classes", &self.only_classes)?,
            exclude: class_list("--exclude-classes", &self.exclude_classes)?.unwrap_or_default(),
        })
    }
}

/// How progress is shown: `--quiet`/`-q`, `--verbose`/`-v` and `--progress`. Flatten it into a
/// stage's `Args` with `#[command(flatten)]`, and give the stage [`ProgressArgs::progress`].
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProgressArgs {
    /// Print nothing but the result, warnings and errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: timings and choices made on your behalf.
    #[arg(short, long)]
    pub verbose: bool,
    /// How progress is shown: bars on a terminal, or a plain line every 10 s (auto: bars when
    /// stderr is a terminal, lines otherwise, e.g. in a log file).
    #[arg(long, value_name = "auto|bars|lines", default_value = "auto", value_parser = parse_mode)]
    pub progress: Option<Mode>,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match s {
        "auto" => Ok(Mode::Auto),
        "bars" => Ok(Mode::Bars),
        "lines" => Ok(Mode::Lines),
        other => Err(format!("`{other}` is not one of auto, bars, lines")),
    }
}

impl ProgressArgs {
    /// How much these flags ask to be said.
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }

    /// The display these flags ask for, on stderr.
    pub fn progress(&self) -> Progress {
        Progress::new(self.progress.unwrap_or(Mode::Auto), self.verbosity())
    }
}

/// An error a stage can end with: user errors (bad flags, files, data) exit with code 2, the
/// rest with 1.
pub trait UserError: Display {
    /// Whether the error comes from the user's input rather than the machine.
    fn is_user_error(&self) -> bool;
}

impl UserError for CoreError {
    fn is_user_error(&self) -> bool {
        CoreError::is_user_error(self)
    }
}

/// A stage's successful result: how it is printed and the exit code it ends with.
pub trait Report: Display {
    /// Prints the report to stdout (and any notes to stderr). A closed stdout (`| head -1`)
    /// ends the output quietly: the run's exit code is unchanged.
    fn print(&self) {
        distill_core::out::print_line(self);
    }

    /// The exit code of a run that produced this report.
    fn exit_code(&self) -> ExitCode {
        ExitCode::SUCCESS
    }
}

/// Parses `args` (the program name first) with `A`'s clap parser, after rewriting the old
/// spellings [`deprecated::DEPRECATED`] lists for `A`'s binary (with a `note:` on stderr for
/// each), then finishes as [`finish`] does.
pub fn run_main<A, R, E>(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    run: impl FnOnce(A) -> Result<R, E>,
) -> ExitCode
where
    A: Parser,
    R: Report,
    E: UserError,
{
    run_main_with(args, A::try_parse_from, run)
}

/// [`run_main`] with the stage's own `parse` in place of clap's plain one (distill-eval and
/// distill-teach record which `--model` each per-model flag follows): the old spellings are
/// rewritten first, then `parse` parses, then it finishes as [`finish`] does.
pub fn run_main_with<A, R, E>(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    parse: impl FnOnce(Vec<OsString>) -> Result<A, clap::Error>,
    run: impl FnOnce(A) -> Result<R, E>,
) -> ExitCode
where
    A: clap::CommandFactory,
    R: Report,
    E: UserError,
{
    let args = deprecated::apply(A::command().get_name(), args);
    finish(parse(args), run)
}

/// Ends a command line: a clap error is printed and exits 2 (`--help` and `--version` print to
/// stdout and exit 0); otherwise `run` runs, its report is printed and its exit code returned,
/// or its error is printed as `error: {e}` on stderr and exits 2 for a user error, 1 otherwise.
pub fn finish<A, R, E>(
    parsed: Result<A, clap::Error>,
    run: impl FnOnce(A) -> Result<R, E>,
) -> ExitCode
where
    R: Report,
    E: UserError,
{
    let args = match parsed {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(args) {
        Ok(report) => {
            report.print();
            report.exit_code()
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_user_error() { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Plain {
        #[command(flatten)]
        data: DataArgs,
    }

    #[derive(Parser, Debug)]
    #[command(mut_arg("split", |a| a.default_value("test")))]
    struct TestSplit {
        #[command(flatten)]
        data: DataArgs,
    }

    #[test]
    fn flags_build_the_selection() {
        let a = Plain::try_parse_from([
            "x",
            "--limit",
            "5",
            "--only-classes",
            "7, 8",
            "--exclude-classes",
            "3",
        ])
        .unwrap();
        let s = a.data.selection().unwrap();
        assert_eq!(s.data, "data/mnist");
        assert_eq!(s.split, Split::Train);
        assert_eq!(s.limit, Some(5));
        assert_eq!(s.classes.only, Some(vec![7, 8]));
        assert_eq!(s.classes.exclude, vec![3]);
        let a = Plain::try_parse_from(["x"]).unwrap();
        let s = a.data.selection().unwrap();
        assert_eq!(s.classes.only, None);
        assert!(s.classes.exclude.is_empty());
    }

    #[test]
    fn the_split_default_can_be_overridden() {
        let a = TestSplit::try_parse_from(["x"]).unwrap();
        assert_eq!(a.data.split, Split::Test);
        let a = TestSplit::try_parse_from(["x", "--split", "train"]).unwrap();
        assert_eq!(a.data.split, Split::Train);
        assert!(Plain::try_parse_from(["x", "--split", "valid"]).is_err());
    }

    #[test]
    fn bad_class_lists_name_their_flag() {
        let a = Plain::try_parse_from(["x", "--exclude-classes", "3,x"]).unwrap();
        let e = a.data.selection().unwrap_err();
        assert!(e.is_user_error());
        assert!(
            e.to_string()
                .starts_with("--exclude-classes: 'x' in class list"),
            "{e}"
        );
    }

    struct Finished(u8);
    impl Display for Finished {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "done")
        }
    }
    impl Report for Finished {
        fn exit_code(&self) -> ExitCode {
            ExitCode::from(self.0)
        }
    }

    fn code(c: ExitCode) -> String {
        format!("{c:?}")
    }

    #[test]
    fn exit_codes_follow_the_outcome() {
        let run = |a: Plain| -> Result<Finished, CoreError> {
            let s = a.data.selection()?;
            Ok(Finished(if s.limit == Some(9) { 130 } else { 0 }))
        };
        assert_eq!(code(run_main(["x"], run)), code(ExitCode::SUCCESS));
        assert_eq!(
            code(run_main(["x", "--limit", "9"], run)),
            code(ExitCode::from(130))
        );
        assert_eq!(
            code(run_main(["x", "--bogus"], run)),
            code(ExitCode::from(2))
        );
        assert_eq!(
            code(run_main(["x", "--help"], run)),
            code(ExitCode::SUCCESS)
        );
        assert_eq!(
            code(run_main(["x", "--only-classes", "x"], run)),
            code(ExitCode::from(2))
        );
        let internal = |_: Plain| -> Result<Finished, CoreError> {
            Err(CoreError::io(
                std::path::Path::new("f"),
                std::io::Error::other("disk on fire"),
            ))
        };
        assert_eq!(code(run_main(["x"], internal)), code(ExitCode::from(1)));
    }
}
