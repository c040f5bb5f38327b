//! How distill's stages report progress without drawing the terminal themselves.
//!
//! A stage library takes a [`Progress`] and asks it for [`Task`]s (a count of rows, batches or
//! restarts with a total) and for lines ([`Progress::say`], [`Progress::detail`],
//! [`Progress::warn`]). The binary that runs the stage decides how that looks, once, for every
//! stage it runs:
//!
//! - [`Mode::Bars`]: live bars on a terminal, all stages of a process in one display (so the bars
//!   of stages that `distill run --jobs N` runs at once sit one above the other instead of
//!   overwriting each other), with lines printed above them;
//! - [`Mode::Lines`]: when stderr is not a terminal (a log file, a batch job), one plain line per
//!   task every interval (10 s, or `DISTILL_PROGRESS_SECONDS`) with the count, the share done, the rate and the time
//!   left, and a last line when the task ends;
//! - [`Mode::Quiet`]: nothing but warnings.
//!
//! It is also where numbers meant for people are formatted ([`grouped`], [`size`],
//! [`human_rate`], [`human_duration`]), so that every stage prints them alike.
//!
//! [`Mode::Auto`] picks bars on a terminal and lines otherwise. [`Progress::stage`] gives a view
//! of the same display whose lines and bars carry the stage's name.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often [`Mode::Lines`] prints a task's line.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// [`LINE_INTERVAL`], or the seconds in `DISTILL_PROGRESS_SECONDS` (e.g. 60 for a quieter log, 0
/// for a line per update).
fn line_interval() -> Duration {
    std::env::var("DISTILL_PROGRESS_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(LINE_INTERVAL, Duration::from_secs_f64)
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bars when stderr is a terminal, plain lines otherwise.
    Auto,
    /// Live bars on stderr.
    Bars,
    /// A plain line per task every [`LINE_INTERVAL`] on stderr.
    Lines,
    /// Only warnings.
    Quiet,
}

/// How much is said besides the progress itself: `--quiet` is [`Verbosity::Quiet`] (which also
/// turns the display to [`Mode::Quiet`]), `-v` is [`Verbosity::Verbose`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

enum Sink {
    Bars(MultiProgress),
    Lines {
        out: Mutex<Box<dyn Write + Send>>,
        interval: Duration,
    },
    Quiet,
}

struct Inner {
    display: Sink,
    verbosity: Verbosity,
}

impl Inner {
    fn write_line(&self, line: &str) {
        match &self.display {
            Sink::Bars(multi) => {
                // `println` prints nothing when the target is hidden; fall back to stderr then.
                if multi.is_hidden() || multi.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
            Sink::Lines { out, .. } => {
                if let Ok(mut w) = out.lock() {
                    let _ = writeln!(w, "{line}");
                    let _ = w.flush();
                }
            }
            Sink::Quiet => eprintln!("{line}"),
        }
    }
}

/// Where a stage reports its progress; cheap to clone and to send to other threads.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
    /// `"name: "` for a stage's view, or empty.
    prefix: Arc<str>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.inner.display {
            Sink::Bars(_) => "bars",
            Sink::Lines { .. } => "lines",
            Sink::Quiet => "quiet",
        };
        f.debug_struct("Progress")
            .field("mode", &mode)
            .field("verbosity", &self.inner.verbosity)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Default for Progress {
    /// [`Progress::hidden`]: what a library uses when nobody asked to see progress.
    fn default() -> Self {
        Progress::hidden()
    }
}

impl Progress {
    /// The display for `mode` on stderr. `Verbosity::Quiet` shows nothing but warnings whatever
    /// the mode.
    pub fn new(mode: Mode, verbosity: Verbosity) -> Progress {
        let mode = match (mode, verbosity) {
            (_, Verbosity::Quiet) => Mode::Quiet,
            (Mode::Auto, _) if std::io::stderr().is_terminal() => Mode::Bars,
            (Mode::Auto, _) => Mode::Lines,
            (m, _) => m,
        };
        let display = match mode {
            Mode::Bars => Sink::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            Mode::Lines => Sink::Lines {
                out: Mutex::new(Box::new(std::io::stderr())),
                interval: line_interval(),
            },
            Mode::Auto | Mode::Quiet => Sink::Quiet,
        };
        Progress::with(display, verbosity)
    }

    /// Plain lines into `out`, a task's line at most every `interval` (and when it ends): for
    /// logs, and for tests of what a stage reports.
    pub fn lines_to(
        out: Box<dyn Write + Send>,
        interval: Duration,
        verbosity: Verbosity,
    ) -> Progress {
        Progress::with(
            Sink::Lines {
                out: Mutex::new(out),
                interval,
            },
            verbosity,
        )
    }

    /// Nothing but warnings (on stderr).
    pub fn hidden() -> Progress {
        Progress::with(Sink::Quiet, Verbosity::Quiet)
    }

    fn with(display: Sink, verbosity: Verbosity) -> Progress {
        Progress {
            inner: Arc::new(Inner { display, verbosity }),
            prefix: Arc::from(""),
        }
    }

    /// The same display, with `name: ` before every line and bar of this view.
    pub fn stage(&self, name: &str) -> Progress {
        Progress {
            inner: Arc::clone(&self.inner),
            prefix: Arc::from(format!("{}{name}: ", self.prefix)),
        }
    }

    /// How much is said.
    pub fn verbosity(&self) -> Verbosity {
        self.inner.verbosity
    }

    /// A line the user should see (a stage's result, an epoch's summary); not when quiet.
    pub fn say(&self, line: impl Display) {
        if self.inner.verbosity >= Verbosity::Normal {
            self.inner.write_line(&format!("{}{line}", self.prefix));
        }
    }

    /// A line for `-v` only (timings, choices made on the user's behalf).
    pub fn detail(&self, line: impl Display) {
        if self.inner.verbosity >= Verbosity::Verbose {
            self.inner.write_line(&format!("{}{line}", self.prefix));
        }
    }

    /// A warning: shown even when quiet.
    pub fn warn(&self, line: impl Display) {
        self.inner
            .write_line(&format!("{}warning: {line}", self.prefix));
    }

    /// A task of `total` `unit`s (rows, batches, restarts) named `label`. It ends when
    /// [`Task::finish`] is called or it is dropped.
    pub fn task(&self, label: impl Into<String>, total: u64, unit: &'static str) -> Task {
        let label = task_label(&self.prefix, &label.into());
        let started = Instant::now();
        let kind = match &self.inner.display {
            Sink::Bars(multi) => {
                let bar = multi.add(ProgressBar::new(total));
                let template = format!(
                    "{{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit}  {{rate}} {unit}/s  eta {{eta}}  {{msg}}"
                );
                if let Ok(style) = ProgressStyle::with_template(&template) {
                    let style = style.progress_chars("=> ").with_key(
                        "rate",
                        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&human_rate(state.per_sec()));
                        },
                    );
                    bar.set_style(style);
                }
                bar.set_prefix(label.clone());
                TaskKind::Bar(bar)
            }
            Sink::Lines { interval, .. } => TaskKind::Lines(Mutex::new(LineState {
                position: 0,
                message: String::new(),
                last: started,
                interval: *interval,
            })),
            Sink::Quiet => TaskKind::Hidden,
        };
        Task {
            inner: Arc::clone(&self.inner),
            label,
            total,
            unit,
            started,
            kind,
            finished: false,
        }
    }
}

/// A task's label under `prefix` (the stage names, `teach: ` under `distill run`): the prefix and
/// the label, or the prefix alone when the label only repeats the stage's name (`teach: `, not
/// `teach: teach`).
pub fn task_label(prefix: &str, label: &str) -> String {
    if prefix.ends_with(&format!("{label}: "))
        && (prefix.len() == label.len() + 2
            || prefix[..prefix.len() - label.len() - 2].ends_with(": "))
    {
        return prefix
            .trim_end_matches(' ')
            .trim_end_matches(':')
            .to_string();
    }
    format!("{prefix}{label}")
}

struct LineState {
    position: u64,
    message: String,
    last: Instant,
    interval: Duration,
}

enum TaskKind {
    Bar(ProgressBar),
    Lines(Mutex<LineState>),
    Hidden,
}

/// A counted piece of work: `inc` as it goes, `finish` when it is done.
pub struct Task {
    inner: Arc<Inner>,
    label: String,
    total: u64,
    unit: &'static str,
    started: Instant,
    kind: TaskKind,
    finished: bool,
}

impl Task {
    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        match &self.kind {
            TaskKind::Bar(bar) => bar.inc(n),
            TaskKind::Lines(state) => self.update(state, |s| s.position += n),
            TaskKind::Hidden => {}
        }
    }

    /// `position` units done in all (a resumed task starts past 0).
    pub fn set_position(&self, position: u64) {
        match &self.kind {
            TaskKind::Bar(bar) => bar.set_position(position),
            TaskKind::Lines(state) => self.update(state, |s| s.position = position),
            TaskKind::Hidden => {}
        }
    }

    /// A short note shown after the counts (e.g. the running loss).
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.kind {
            TaskKind::Bar(bar) => bar.set_message(message),
            TaskKind::Lines(state) => {
                if let Ok(mut s) = state.lock() {
                    s.message = message;
                }
            }
            TaskKind::Hidden => {}
        }
    }

    fn update(&self, state: &Mutex<LineState>, change: impl FnOnce(&mut LineState)) {
        let Ok(mut s) = state.lock() else { return };
        change(&mut s);
        let now = Instant::now();
        if now.duration_since(s.last) >= s.interval && s.position < self.total {
            s.last = now;
            let line = self.line(s.position, &s.message, now, false);
            drop(s);
            self.inner.write_line(&line);
        }
    }

    /// The task's line at `now`: while it runs, `label: 12,345/60,000 rows (21%)  3,412 rows/s
    /// eta 14 s  message`; once it ended (`done`), `label: 60,000/60,000 rows in 18 s  3,333
    /// rows/s  message`.
    fn line(&self, position: u64, message: &str, now: Instant, done: bool) -> String {
        let seconds = now.duration_since(self.started).as_secs_f64();
        let mut line = format!(
            "{}: {}/{} {}",
            self.label,
            grouped(position),
            grouped(self.total),
            self.unit
        );
        if done {
            line.push_str(&format!(" in {}", human_duration(seconds)));
        } else if self.total > 0 {
            line.push_str(&format!(
                " ({:.0}%)",
                100.0 * position as f64 / self.total as f64
            ));
        }
        if seconds > 0.0 && position > 0 {
            let rate = position as f64 / seconds;
            line.push_str(&format!("  {} {}/s", human_rate(rate), self.unit));
            if !done && position < self.total {
                let left = (self.total - position) as f64 / rate;
                line.push_str(&format!("  eta {}", human_duration(left)));
            }
        }
        if !message.is_empty() {
            line.push_str("  ");
            line.push_str(message);
        }
        line
    }

    /// The task is done: its bar goes away, or its last line is printed.
    pub fn finish(mut self) {
        self.end();
    }

    /// The task is done and the caller prints its own line for it: its bar goes away, and no
    /// last line is printed.
    pub fn finish_quietly(mut self) {
        self.finished = true;
        if let TaskKind::Bar(bar) = &self.kind {
            bar.finish_and_clear();
        }
    }

    fn end(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        match &self.kind {
            TaskKind::Bar(bar) => bar.finish_and_clear(),
            TaskKind::Lines(state) => {
                let (position, message) = match state.lock() {
                    Ok(s) => (s.position, s.message.clone()),
                    Err(_) => return,
                };
                let line = self.line(position, &message, Instant::now(), true);
                self.inner.write_line(&line);
            }
            TaskKind::Hidden => {}
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.end();
    }
}

/// `1234567` as `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A byte count as `999 B`, `2.0 KiB`, `3.5 MiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A rate with as many digits as mean something: `12,345`, `12.3`, `0.42`.
pub fn human_rate(rate: f64) -> String {
    if !rate.is_finite() {
        return "-".to_string();
    }
    if rate >= 100.0 {
        grouped(rate.round() as u64)
    } else if rate >= 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.2}")
    }
}

/// Seconds as `14 s`, `2 min 05 s` or `3 h 20 min`.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_string();
    }
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn lines_report_count_share_rate_and_eta_then_a_last_line() {
        let out = Captured::default();
        let p = Progress::lines_to(Box::new(out.clone()), Duration::ZERO, Verbosity::Normal);
        let teach = p.stage("teach");
        let task = teach.task("rows", 60_000, "rows");
        std::thread::sleep(Duration::from_millis(20));
        task.inc(15_000);
        task.set_message("teacher-1");
        task.inc(15_000);
        task.finish();
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("teach: rows: 15,000/60,000 rows (25%)  "),
            "{text}"
        );
        assert!(lines[0].contains(" rows/s  eta "), "{text}");
        assert!(
            lines[1].starts_with("teach: rows: 30,000/60,000 rows (50%)"),
            "{text}"
        );
        assert!(lines[1].ends_with("  teacher-1"), "{text}");
        assert!(
            lines[2].starts_with("teach: rows: 30,000/60,000 rows in "),
            "{text}"
        );
    }

    #[test]
    fn lines_wait_for_the_interval_and_a_quiet_finish_prints_none() {
        let out = Captured::default();
        let p = Progress::lines_to(
            Box::new(out.clone()),
            Duration::from_secs(3600),
            Verbosity::Normal,
        );
        let task = p.task("epoch 1/5", 100, "rows");
        for _ in 0..100 {
            task.inc(1);
        }
        drop(task);
        let text = out.text();
        assert_eq!(text.lines().count(), 1, "only the last line: {text}");
        assert!(text.starts_with("epoch 1/5: 100/100 rows in "), "{text}");
        // A task finished quietly leaves its line to the caller.
        let task = p.task("epoch 2/5", 100, "rows");
        task.inc(100);
        task.finish_quietly();
        assert_eq!(out.text(), text);
    }

    #[test]
    fn verbosity_decides_which_lines_show() {
        let out = Captured::default();
        let p = Progress::lines_to(Box::new(out.clone()), Duration::ZERO, Verbosity::Normal);
        p.say("said");
        p.detail("detail");
        p.warn("careful");
        assert_eq!(out.text(), "said\nwarning: careful\n");
        let out = Captured::default();
        let p = Progress::lines_to(Box::new(out.clone()), Duration::ZERO, Verbosity::Verbose);
        p.stage("eval").detail("detail");
        assert_eq!(out.text(), "eval: detail\n");
        let out = Captured::default();
        let p = Progress::lines_to(Box::new(out.clone()), Duration::ZERO, Verbosity::Quiet);
        p.say("said");
        p.warn("careful");
        assert_eq!(out.text(), "warning: careful\n");
    }

    #[test]
    fn hidden_tasks_count_nothing_and_print_nothing() {
        let p = Progress::hidden();
        let t = p.task("x", 10, "rows");
        t.inc(5);
        t.set_message("m");
        t.finish();
        assert_eq!(
            format!("{p:?}"),
            "Progress { mode: \"quiet\", verbosity: Quiet, prefix: \"\" }"
        );
    }

    #[test]
    fn numbers_read_like_a_person_wrote_them() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1_276_810), "1,276,810");
        assert_eq!(grouped(123), "123");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(task_label("teach: ", "teach"), "teach");
        assert_eq!(task_label("p: teach: ", "teach"), "p: teach");
        assert_eq!(task_label("teacher-2: ", "train"), "teacher-2: train");
        assert_eq!(task_label("eval: ", "evaluate"), "eval: evaluate");
        assert_eq!(task_label("", "teach"), "teach");
        assert_eq!(task_label("my-teach: ", "teach"), "my-teach: teach");
        assert_eq!(human_rate(12_345.6), "12,346");
        assert_eq!(human_rate(12.345), "12.3");
        assert_eq!(human_rate(0.4249), "0.42");
        assert_eq!(human_duration(4.25), "4.2 s");
        assert_eq!(human_duration(14.2), "14 s");
        assert_eq!(human_duration(125.0), "2 min 05 s");
        assert_eq!(human_duration(12_000.0), "3 h 20 min");
    }
}
