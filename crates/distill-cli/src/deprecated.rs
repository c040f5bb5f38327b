//! Old spellings of flags and flag values, accepted for one release with a note: the one table
//! every stage binary (through [`crate::run_main`]) and `distill run` (for a pipeline's stages)
//! rewrite their command lines with before parsing.

use std::ffi::OsString;

/// One old spelling and its new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deprecated {
    /// The stage binary it applies to (its clap name, e.g. `distill-eval`).
    pub binary: &'static str,
    /// The flag: the old flag when `value` is `None`, else the flag whose value was renamed.
    pub flag: &'static str,
    /// The old value of `flag`, when a value (not the flag) was renamed.
    pub value: Option<&'static str>,
    /// The new spelling: the new flag, or with `value`, the new value.
    pub new: &'static str,
}

impl Deprecated {
    /// The note printed when the old spelling is used.
    pub fn note(&self) -> String {
        match self.value {
            None => format!(
                "{} is now {}; the old spelling goes in the next release",
                self.flag, self.new
            ),
            Some(old) => format!(
                "{flag} {old} is now {flag} {new}; the old spelling goes in the next release",
                flag = self.flag,
                new = self.new
            ),
        }
    }
}

/// Every old spelling still accepted.
pub const DEPRECATED: &[Deprecated] = &[
    Deprecated {
        binary: "distill-eval",
        flag: "--batch-size",
        value: None,
        new: "--batch",
    },
    Deprecated {
        binary: "distill-eval",
        flag: "--specialists",
        value: None,
        new: "--manifest",
    },
    Deprecated {
        binary: "distill-report",
        flag: "--specialists",
        value: None,
        new: "--subsets",
    },
    Deprecated {
        binary: "distill-cluster",
        flag: "--specialists",
        value: None,
        new: "--count",
    },
    Deprecated {
        binary: "distill-cluster",
        flag: "--method",
        value: Some("covariance"),
        new: "second-moment",
    },
];

/// `args` (the program name first) with the old spellings [`DEPRECATED`] lists for `binary`
/// replaced by the new ones (`--old V`, `--old=V`, `--flag OLD` and `--flag=OLD`), and one note
/// per old spelling met. Arguments after `--` are left alone.
pub fn rewrite(binary: &str, args: Vec<OsString>) -> (Vec<OsString>, Vec<String>) {
    let table: Vec<&Deprecated> = DEPRECATED.iter().filter(|d| d.binary == binary).collect();
    let mut notes: Vec<String> = Vec::new();
    let mut note = |d: &Deprecated| {
        let n = d.note();
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    let mut out: Vec<OsString> = Vec::with_capacity(args.len());
    let mut rest = false;
    let mut previous: Option<String> = None;
    for arg in args {
        let Some(text) = arg.to_str().filter(|_| !rest) else {
            out.push(arg);
            previous = None;
            continue;
        };
        let text = text.to_string();
        if text == "--" {
            rest = true;
        }
        let mut new = text.clone();
        for d in &table {
            match d.value {
                None => {
                    if text == d.flag {
                        new = d.new.to_string();
                        note(d);
                    } else if let Some(v) = text.strip_prefix(&format!("{}=", d.flag)) {
                        new = format!("{}={v}", d.new);
                        note(d);
                    }
                }
                Some(old) => {
                    if previous.as_deref() == Some(d.flag) && text == old {
                        new = d.new.to_string();
                        note(d);
                    } else if text == format!("{}={old}", d.flag) {
                        new = format!("{}={}", d.flag, d.new);
                        note(d);
                    }
                }
            }
        }
        previous = Some(new.clone());
        out.push(OsString::from(new));
    }
    (out, notes)
}

/// [`rewrite`], with each note printed on stderr as `note: …`: for a binary's `main`.
pub fn apply<I, T>(binary: &str, args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let (args, notes) = rewrite(binary, args.into_iter().map(Into::into).collect());
    for n in notes {
        eprintln!("note: {n}");
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn old_flags_and_values_become_new_ones_with_a_note() {
        let (a, notes) = rewrite(
            "distill-eval",
            args(&["distill-eval", "--batch-size", "8", "--model", "m.onnx"]),
        );
        assert_eq!(
            a,
            args(&["distill-eval", "--batch", "8", "--model", "m.onnx"])
        );
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].starts_with("--batch-size is now --batch"),
            "{notes:?}"
        );
        let (a, _) = rewrite("distill-eval", args(&["distill-eval", "--batch-size=8"]));
        assert_eq!(a, args(&["distill-eval", "--batch=8"]));

        // One flag name, one meaning: --specialists was a count of subsets in cluster, a
        // manifest in eval and a subsets file in report.
        let (a, notes) = rewrite("distill-eval", args(&["e", "--specialists=m.yaml"]));
        assert_eq!(a, args(&["e", "--manifest=m.yaml"]));
        assert_eq!(
            notes,
            ["--specialists is now --manifest; the old spelling goes in the next release"]
        );
        let (a, _) = rewrite("distill-cluster", args(&["c", "--specialists", "4"]));
        assert_eq!(a, args(&["c", "--count", "4"]));
        let (a, notes) = rewrite("distill-report", args(&["r", "--specialists", "s.yaml"]));
        assert_eq!(a, args(&["r", "--subsets", "s.yaml"]));
        assert_eq!(
            notes,
            ["--specialists is now --subsets; the old spelling goes in the next release"]
        );

        let (a, notes) = rewrite(
            "distill-cluster",
            args(&[
                "distill-cluster",
                "--method",
                "covariance",
                "--out",
                "covariance",
            ]),
        );
        assert_eq!(
            a,
            args(&[
                "distill-cluster",
                "--method",
                "second-moment",
                "--out",
                "covariance"
            ])
        );
        assert_eq!(
            notes,
            vec![
                "--method covariance is now --method second-moment; the old spelling goes in the next release"
            ]
        );
        let (a, _) = rewrite("distill-cluster", args(&["x", "--method=covariance"]));
        assert_eq!(a, args(&["x", "--method=second-moment"]));
    }

    #[test]
    fn other_binaries_and_new_spellings_are_left_alone() {
        let given = args(&["distill-train", "--batch-size", "8"]);
        let (a, notes) = rewrite("distill-train", given.clone());
        assert_eq!(a, given);
        assert!(notes.is_empty());
        let given = args(&["distill-eval", "--batch", "8", "--", "--batch-size"]);
        let (a, notes) = rewrite("distill-eval", given.clone());
        assert_eq!(a, given);
        assert!(notes.is_empty());
    }
}
