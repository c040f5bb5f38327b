//! The page: inline CSS, the results table and the figures of [`crate::plot`], one after another,
//! in the order a reader asks the questions: how good, how it learned, what it still confuses,
//! whether it is calibrated, what the clusters and specialists did, what it costs, where it came
//! from.
//!
//! Every number of the results table carries the value it was printed from
//! (`data-entry`, `data-field`, `data-value`), so that a test can hold the table to `metrics.json`.

use std::fmt::Write as _;

use crate::inputs::{Entry, Metrics};
use crate::plot::Palette;
use crate::{Inputs, ReportError};

mod figures;
mod provenance;
mod specialists;

use figures::{calibration, confusions, curves, header, results};
use provenance::provenance;
use specialists::{clusters, specialists, tradeoffs};

/// The page and the ids of its figures.
pub struct Page {
    pub html: String,
    pub figures: Vec<String>,
}

/// `s` with `&`, `<`, `>`, `"` and `'` escaped for HTML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A figure id from a name: lowercase letters, digits and `-`.
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    s.trim_matches('-').to_string()
}

/// Numbers are printed as distill-eval prints them.
pub use distill_progress::{grouped, size};

/// How each field of the results table is printed from its `metrics.json` value; the test of
/// the page uses the same rules to hold the table to the file.
pub fn format_field(field: &str, value: f64) -> String {
    match field {
        "parameters" | "errors" | "errors_unadjusted" | "paper_errors" => {
            grouped(value.round() as u64)
        }
        "file_bytes" => size(value.round() as u64),
        "error_rate" | "agreement" | "float_agreement" => format!("{:.2}", 100.0 * value),
        "nll" | "ece" | "max_abs_diff" => format!("{value:.4}"),
        "latency_ms_batch1" => format!("{value:.3}"),
        "rows_per_s_batch256" | "rows_per_second" => grouped(value.round() as u64),
        _ => format!("{value}"),
    }
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0; color: #222; background: #f6f6f4; line-height: 1.45; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 1.7em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.4em; border-bottom: 2px solid #ddd; padding-bottom: 4px; }
p.lead { color: #555; margin-top: 0; }
section { break-inside: avoid-page; }
table { border-collapse: collapse; background: #fff; font-size: 0.92em; margin: 8px 0; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th { background: #eceae6; font-weight: 600; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
td.command { white-space: normal; word-break: break-all; text-align: left; min-width: 420px; }
td.hash, span.hash { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85em; }
tr.ensemble td { background: #faf8f2; }
tr.system td { background: #f0f7ef; font-weight: 600; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 7px; vertical-align: baseline; }
.figs { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; width: fit-content; background: #fff; border: 1px solid #e2e2e2; border-radius: 4px; padding: 6px; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; padding: 4px 6px 2px; contain: inline-size; }
.missing { background: #fff4e5; border: 1px solid #f0b458; border-radius: 4px; padding: 10px 16px; margin: 14px 0; }
.note { color: #666; font-style: italic; }
.state-complete { color: #2c7a2c; }
.state-started, .state-never { color: #b5441b; font-weight: 600; }
.kv td { text-align: left; }
footer { margin-top: 40px; color: #777; font-size: 0.85em; }
@media print { body { background: #fff; } main { padding: 0; } figure { border: none; } }
"#;

struct Builder {
    body: String,
    figures: Vec<String>,
}

impl Builder {
    fn push(&mut self, s: &str) {
        self.body.push_str(s);
    }

    fn figure(&mut self, svg: String, id: &str, caption: &str) {
        self.figures.push(id.to_string());
        let _ = writeln!(
            self.body,
            "<figure data-figure=\"{id}\">{svg}<figcaption>{}</figcaption></figure>",
            escape(caption)
        );
    }

    fn note(&mut self, text: &str) {
        let _ = writeln!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }
}

/// The entries whose confusion matrix and per-class errors are drawn: the models that are no
/// ensemble's member (the students), then the first ensemble; all models when none is left.
fn focus(m: &Metrics) -> Vec<&Entry> {
    let members: Vec<&str> = m
        .entries
        .iter()
        .flat_map(|e| e.members.iter().map(String::as_str))
        .collect();
    let mut chosen: Vec<&Entry> = m
        .entries
        .iter()
        .filter(|e| !e.is_ensemble() && !members.contains(&e.name.as_str()))
        .collect();
    if let Some(e) = m.entries.iter().find(|e| e.is_ensemble()) {
        chosen.push(e);
    }
    if chosen.iter().all(|e| e.is_ensemble()) {
        chosen = m.entries.iter().filter(|e| !e.is_ensemble()).collect();
    }
    chosen
}

/// Draws the page.
pub fn page(inputs: &Inputs) -> Result<Page, ReportError> {
    let mut names: Vec<&str> = Vec::new();
    if let Some((_, m)) = &inputs.metrics {
        names.extend(m.entries.iter().map(|e| e.name.as_str()));
    }
    names.extend(inputs.train_logs.iter().map(|l| l.name.as_str()));
    let palette = Palette::new(names);
    let mut b = Builder {
        body: String::new(),
        figures: Vec::new(),
    };
    header(&mut b, inputs);
    results(&mut b, inputs, &palette);
    curves(&mut b, inputs, &palette)?;
    confusions(&mut b, inputs, &palette)?;
    calibration(&mut b, inputs, &palette)?;
    clusters(&mut b, inputs)?;
    tradeoffs(&mut b, inputs, &palette)?;
    specialists(&mut b, inputs)?;
    provenance(&mut b, inputs);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"distill-report {}\">\n<title>{}</title>\n<style>{CSS}</style>\n\
         </head>\n<body>\n<main>\n{}<footer>Written by distill-report {}. Self-contained: \
         every figure is inline SVG; the page loads nothing from anywhere.</footer>\n</main>\n</body>\n</html>\n",
        distill_core::TOOL_VERSION,
        escape(&inputs.title),
        b.body,
        distill_core::TOOL_VERSION
    );
    Ok(Page {
        html,
        figures: b.figures,
    })
}

fn class_labels(inputs: &Inputs, classes: usize) -> Vec<String> {
    let mut labels: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    if let Some((_, s)) = &inputs.specialists {
        for sub in &s.subsets {
            if let Some(names) = &sub.names {
                for (&c, n) in sub.classes.iter().zip(names) {
                    if let Some(slot) = labels.get_mut(c as usize) {
                        *slot = n.clone();
                    }
                }
            }
        }
    }
    labels
}

fn short_hash(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_slugs() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(slug("ensemble (arithmetic)"), "ensemble-arithmetic");
        assert_eq!(slug("teacher-1"), "teacher-1");
    }

    #[test]
    fn fields_print_as_distill_eval_prints_them() {
        assert_eq!(format_field("error_rate", 0.0146), "1.46");
        assert_eq!(format_field("parameters", 1_276_810.0), "1,276,810");
        assert_eq!(format_field("file_bytes", 2048.0), "2.0 KiB");
        assert_eq!(format_field("nll", 0.071234), "0.0712");
        assert_eq!(format_field("rows_per_s_batch256", 23962.4), "23,962");
    }
}
