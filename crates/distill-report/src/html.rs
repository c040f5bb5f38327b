//! The page: inline CSS, the results table and the figures of [`crate::plot`], one after another,
//! in the order a reader asks the questions: how good, how it learned, what it still confuses,
//! whether it is calibrated, what the clusters and specialists did, what it costs, where it came
//! from.
//!
//! Every number of the results table carries the value it was printed from
//! (`data-entry`, `data-field`, `data-value`), so that a test can hold the table to `metrics.json`.

use std::fmt::Write as _;
use std::path::Path;

use crate::inputs::{Entry, Metrics};
use crate::plot::{self, Bars, Line, Matrix, Palette, Point, Reliability};
use crate::{Error, Inputs};

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

/// Bytes as `999 B`, `2.0 KiB`, `3.5 MiB` (as distill-eval prints them).
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

/// How each field of the results table is printed from its `metrics.json` value; the test of
/// the page uses the same rules to hold the table to the file.
pub fn format_field(field: &str, value: f64) -> String {
    match field {
        "parameters" | "errors" | "errors_unadjusted" | "paper_errors" => {
            grouped(value.round() as u64)
        }
        "file_bytes" => size(value.round() as u64),
        "error_rate" | "agreement" => format!("{:.2}", 100.0 * value),
        "nll" | "ece" => format!("{value:.4}"),
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
pub fn page(inputs: &Inputs) -> Result<Page, Error> {
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

fn header(b: &mut Builder, inputs: &Inputs) {
    let _ = writeln!(b.body, "<h1>{}</h1>", escape(&inputs.title));
    if let Some((_, m)) = &inputs.metrics {
        let models = m.entries.iter().filter(|e| !e.is_ensemble()).count();
        let ensembles = m.entries.len() - models;
        let _ = writeln!(
            b.body,
            "<p class=\"lead\">{models} models{} evaluated on {} rows of <b>{}</b> ({}), {} classes.</p>",
            if ensembles > 0 {
                format!(" and {ensembles} ensembles")
            } else {
                String::new()
            },
            grouped(m.rows as u64),
            escape(&m.dataset),
            escape(if m.transform.is_empty() {
                &m.split
            } else {
                &m.transform
            }),
            m.classes
        );
    }
    let unfinished: Vec<&crate::StageState> = inputs
        .stages
        .iter()
        .filter(|s| s.state != "complete" && s.kind != "report")
        .collect();
    if !inputs.missing.is_empty() || !unfinished.is_empty() {
        b.push("<div class=\"missing\" id=\"missing\"><b>This pipeline is incomplete.</b> The figures below are drawn from what exists.<ul>\n");
        for s in &unfinished {
            let _ = writeln!(
                b.body,
                "<li>stage <b>{}</b> ({}): {}</li>",
                escape(&s.name),
                escape(&s.kind),
                if s.state == "started" {
                    "started but did not complete (failed, killed or still running)"
                } else {
                    "has not run"
                }
            );
        }
        for m in &inputs.missing {
            let _ = writeln!(
                b.body,
                "<li>missing <code>{}</code>: {}</li>",
                escape(&m.path.display().to_string()),
                escape(&m.what)
            );
        }
        b.push("</ul></div>\n");
    }
}

fn cell(entry: usize, field: &str, value: Option<f64>) -> String {
    match value {
        Some(v) => format!(
            "<td data-entry=\"{entry}\" data-field=\"{field}\" data-value=\"{v}\">{}</td>",
            format_field(field, v)
        ),
        None => format!("<td data-entry=\"{entry}\" data-field=\"{field}\">-</td>"),
    }
}

fn results(b: &mut Builder, inputs: &Inputs, palette: &Palette) {
    b.push("<section><h2>Results</h2>\n");
    let Some((path, m)) = &inputs.metrics else {
        b.note("No results table: metrics.json (the eval stage's output) is missing.");
        b.push("</section>\n");
        return;
    };
    let paper = !inputs.paper.is_empty();
    let _ = writeln!(
        b.body,
        "<table id=\"results\"><thead><tr><th>model</th><th class=\"text\">type</th><th>parameters</th><th>size</th>\
         <th>errors</th><th>error %</th><th>NLL</th><th>ECE</th><th>agree %</th><th>ms @1</th><th>rows/s @256</th>{}</tr></thead><tbody>",
        if paper { "<th>paper errors</th>" } else { "" }
    );
    for (k, e) in m.entries.iter().enumerate() {
        let class = if e.is_ensemble() {
            " class=\"ensemble\""
        } else {
            ""
        };
        let _ = write!(
            b.body,
            "<tr{class}><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td class=\"text\">{}</td>",
            palette.css(&e.name),
            escape(&e.name),
            escape(&e.entry_type)
        );
        b.push(&cell(k, "parameters", Some(e.parameters as f64)));
        b.push(&cell(k, "file_bytes", Some(e.file_bytes as f64)));
        b.push(&cell(k, "errors", Some(e.errors as f64)));
        b.push(&cell(k, "error_rate", Some(e.error_rate)));
        b.push(&cell(k, "nll", Some(e.nll)));
        b.push(&cell(k, "ece", Some(e.ece)));
        b.push(&cell(k, "agreement", e.agreement));
        b.push(&cell(k, "latency_ms_batch1", e.latency_ms_batch1));
        b.push(&cell(k, "rows_per_s_batch256", e.rows_per_s_batch256));
        if paper {
            let fig = inputs.paper.iter().find(|p| p.name == e.name);
            b.push(&cell(k, "paper_errors", fig.map(|f| f.errors as f64)));
        }
        b.push("</tr>\n");
    }
    if let Some(s) = &m.specialists {
        let rows = s.rows.unwrap_or(m.rows);
        let _ = writeln!(
            b.body,
            "<tr class=\"system\"><td>generalist + specialists</td><td class=\"text\">system</td><td></td><td></td>{}{}<td></td><td></td><td></td><td></td>{}{}</tr>",
            s.combined_errors
                .map(|v| format!(
                    "<td data-entry=\"specialists\" data-field=\"combined_errors\" data-value=\"{v}\">{}</td>",
                    grouped(v as u64)
                ))
                .unwrap_or_else(|| "<td>-</td>".into()),
            s.combined_errors
                .filter(|_| rows > 0)
                .map(|v| format!("<td>{:.2}</td>", 100.0 * v as f64 / rows as f64))
                .unwrap_or_else(|| "<td>-</td>".into()),
            s.rows_per_second
                .map(|v| format!(
                    "<td data-entry=\"specialists\" data-field=\"rows_per_second\" data-value=\"{v}\">{}</td>",
                    grouped(v.round() as u64)
                ))
                .unwrap_or_else(|| "<td>-</td>".into()),
            if paper { "<td></td>" } else { "" }
        );
    }
    b.push("</tbody></table>\n");
    let _ = writeln!(
        b.body,
        "<p class=\"note\">From <code>{}</code>: {} rows of the {} split. Errors, NLL (nats) and ECE (15 bins) after any bias adjustment; \
         agreement with {}; latency is the median of one row, throughput at batch 256{}.{}</p>",
        escape(&path.display().to_string()),
        grouped(m.rows as u64),
        escape(&m.split),
        escape(if m.agreement_reference.is_empty() {
            "the reference"
        } else {
            &m.agreement_reference
        }),
        if m.latency_runs == 0 {
            " (not measured: --latency-runs 0)"
        } else {
            ""
        },
        if paper {
            " The last column is the paper's test errors for the same configuration."
        } else {
            ""
        }
    );
    for e in m.entries.iter().filter(|e| e.errors_unadjusted.is_some()) {
        let _ = writeln!(
            b.body,
            "<p class=\"note\">{}: {} errors after the bias adjustment, {} before it.</p>",
            escape(&e.name),
            e.errors,
            e.errors_unadjusted.unwrap_or_default()
        );
    }
    for n in &m.notes {
        b.note(n);
    }
    b.push("</section>\n");
}

fn curves(b: &mut Builder, inputs: &Inputs, palette: &Palette) -> Result<(), Error> {
    b.push("<section><h2>Learning curves</h2>\n");
    if inputs.train_logs.is_empty() {
        b.note("No training records (MODEL.metrics.csv) to draw.");
        b.push("</section>\n");
        return Ok(());
    }
    let mut error_lines = Vec::new();
    let mut loss_lines = Vec::new();
    for log in &inputs.train_logs {
        let color = palette.color(&log.name);
        let pick = |f: &dyn Fn(&crate::inputs::Epoch) -> Option<f64>| -> Vec<(f64, f64)> {
            log.epochs
                .iter()
                .filter_map(|e| f(e).map(|v| (e.epoch as f64, v)))
                .collect()
        };
        let val = pick(&|e| e.val_error.map(|v| 100.0 * v));
        let train = pick(&|e| e.train_error.map(|v| 100.0 * v));
        if !val.is_empty() {
            error_lines.push(Line {
                name: format!("{} validation", log.name),
                color,
                dashed: false,
                points: val,
            });
        }
        if !train.is_empty() {
            error_lines.push(Line {
                name: format!("{} train", log.name),
                color,
                dashed: true,
                points: train,
            });
        }
        // The validation loss is the cross-entropy on the labels for every model; the training
        // objective of a distilled model (T² times a cross-entropy with the soft targets) is on
        // another scale, so it is drawn only for models without a validation loss.
        let vloss = pick(&|e| e.val_loss);
        if vloss.is_empty() {
            let tloss = pick(&|e| e.loss);
            if !tloss.is_empty() {
                loss_lines.push(Line {
                    name: format!("{} train objective", log.name),
                    color,
                    dashed: true,
                    points: tloss,
                });
            }
        } else {
            loss_lines.push(Line {
                name: log.name.clone(),
                color,
                dashed: false,
                points: vloss,
            });
        }
    }
    b.push("<div class=\"figs\">\n");
    let svg = plot::lines(
        "fig-learning-error",
        "Error per epoch",
        "epoch",
        "error (%)",
        &error_lines,
        (600, 400),
    )?;
    b.figure(
        svg,
        "fig-learning-error",
        "Solid: error on the held-out validation rows after each epoch; dashed: error on the training rows during the epoch (with dropout and jitter, as trained).",
    );
    let svg = plot::lines(
        "fig-learning-loss",
        "Validation loss per epoch",
        "epoch",
        "cross-entropy (nats)",
        &loss_lines,
        (600, 400),
    )?;
    b.figure(
        svg,
        "fig-learning-loss",
        "Cross-entropy of the labels on the held-out validation rows after each epoch: comparable between a distilled student and a baseline, unlike their training objectives (a distilled student's soft term is T\u{b2} times a cross-entropy with the soft targets). A dashed line is a training objective, drawn for a model without validation rows.",
    );
    b.push("</div>\n</section>\n");
    Ok(())
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

fn confusions(b: &mut Builder, inputs: &Inputs, palette: &Palette) -> Result<(), Error> {
    b.push("<section><h2>What it still confuses</h2>\n");
    let Some((_, m)) = &inputs.metrics else {
        b.note("No confusion matrices: metrics.json is missing.");
        b.push("</section>\n");
        return Ok(());
    };
    let labels = class_labels(inputs, m.classes);
    let chosen = focus(m);
    b.push("<div class=\"figs\">\n");
    for e in &chosen {
        let id = format!("fig-confusion-{}", slug(&e.name));
        let values: Vec<Vec<f64>> = e
            .confusion
            .iter()
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect();
        let title = format!("{}: {} errors", e.name, grouped(e.errors as u64));
        let side = if m.classes <= 20 { 390 } else { 640 };
        let svg = plot::heatmap(
            &id,
            &Matrix {
                title: &title,
                labels: &labels,
                values: &values,
                row_desc: "true class",
                col_desc: "predicted class",
                annotate: true,
                blocks: &[],
            },
            side,
        )?;
        b.figure(
            svg,
            &id,
            &format!(
                "Confusion matrix of {} on the {} split: rows are true classes, columns predictions; the diagonal (correct) is blue-grey, errors on a square-root colour scale.",
                e.name, m.split
            ),
        );
    }
    b.push("</div>\n");
    let groups: Vec<Bars> = chosen
        .iter()
        .map(|e| Bars {
            name: e.name.clone(),
            color: palette.color(&e.name),
            values: e
                .per_class_errors
                .iter()
                .zip(&e.per_class_rows)
                .map(|(&err, &rows)| {
                    if rows > 0 {
                        100.0 * err as f64 / rows as f64
                    } else {
                        0.0
                    }
                })
                .collect(),
        })
        .collect();
    let width = (240 + 14 * m.classes * chosen.len().max(1)).clamp(700, 1200) as u32;
    let svg = plot::grouped_bars(
        "fig-per-class",
        "Error by true class",
        &labels,
        "error (%)",
        &groups,
        (width, 380),
    )?;
    b.figure(
        svg,
        "fig-per-class",
        "Share of each true class's test rows that are misclassified.",
    );
    b.push("</section>\n");
    Ok(())
}

fn calibration(b: &mut Builder, inputs: &Inputs, palette: &Palette) -> Result<(), Error> {
    b.push("<section><h2>Calibration</h2>\n");
    let Some((_, m)) = &inputs.metrics else {
        b.note("No reliability diagrams: metrics.json is missing.");
        b.push("</section>\n");
        return Ok(());
    };
    if m.entries.iter().all(|e| e.reliability.is_empty()) {
        b.note("No reliability diagrams: this metrics.json has no `reliability` bins (it was written by an older distill-eval); evaluate again to draw them.");
        b.push("</section>\n");
        return Ok(());
    }
    b.push("<div class=\"figs\">\n");
    for e in m.entries.iter().filter(|e| !e.reliability.is_empty()) {
        let id = format!("fig-reliability-{}", slug(&e.name));
        let bins: Vec<(f64, f64, usize, usize, f64)> = e
            .reliability
            .iter()
            .map(|r| (r.lower, r.upper, r.rows, r.correct, r.confidence))
            .collect();
        let svg = plot::reliability(
            &id,
            &Reliability {
                title: &e.name,
                color: palette.color(&e.name),
                bins: &bins,
                ece: e.ece,
            },
            (330, 320),
        )?;
        b.figure(svg, &id, &format!("Reliability of {}.", e.name));
    }
    b.push("</div>\n");
    b.note("Bars: accuracy of the rows in each confidence bin; dots: the bin's mean confidence and accuracy; dashed: perfect calibration; grey strip: how many rows fall in each bin. A bar below the diagonal is over-confident.");
    b.push("</section>\n");
    Ok(())
}

fn clusters(b: &mut Builder, inputs: &Inputs) -> Result<(), Error> {
    let Some((spath, s)) = &inputs.specialists else {
        return Ok(());
    };
    b.push("<section><h2>Class clusters</h2>\n");
    let (order, blocks) = s.order();
    let source = inputs.metrics.as_ref().and_then(|(_, m)| {
        m.entries
            .iter()
            .find(|e| e.is_ensemble())
            .or(m.entries.first())
            .filter(|e| e.confusion.len() == s.classes)
            .map(|e| (m, e))
    });
    match source {
        Some((m, e)) => {
            let labels = class_labels(inputs, s.classes);
            let ordered_labels: Vec<String> = order.iter().map(|&c| labels[c].clone()).collect();
            let values: Vec<Vec<f64>> = order
                .iter()
                .map(|&i| {
                    order
                        .iter()
                        .map(|&j| {
                            if i == j {
                                e.confusion[i][i] as f64
                            } else {
                                (e.confusion[i][j] + e.confusion[j][i]) as f64
                            }
                        })
                        .collect()
                })
                .collect();
            let title = format!("{} confusions, classes grouped by subset", e.name);
            let side = if s.classes <= 20 { 520 } else { 760 };
            let svg = plot::heatmap(
                "fig-clusters",
                &Matrix {
                    title: &title,
                    labels: &ordered_labels,
                    values: &values,
                    row_desc: "class",
                    col_desc: "class",
                    annotate: true,
                    blocks: &blocks,
                },
                side,
            )?;
            b.figure(
                svg,
                "fig-clusters",
                &format!(
                    "How often {} confuses each pair of classes on the {} split (either way round), with the classes reordered by the specialist subsets of {}; blue squares outline each subset's own classes, classes left to the generalist come last; the diagonal holds the correctly classified rows.",
                    e.name,
                    m.split,
                    spath.display()
                ),
            );
        }
        None => b.note("No cluster heatmap: it is drawn from an ensemble's confusions in metrics.json, which is missing."),
    }
    b.push("<table><thead><tr><th>subset</th><th class=\"text\">classes</th><th>captured</th></tr></thead><tbody>\n");
    let labels = class_labels(inputs, s.classes);
    for sub in &s.subsets {
        let classes: Vec<String> = sub
            .classes
            .iter()
            .map(|&c| {
                let l = labels
                    .get(c as usize)
                    .cloned()
                    .unwrap_or_else(|| c.to_string());
                if sub.joined.contains(&c) {
                    format!("({l})")
                } else {
                    l
                }
            })
            .collect();
        let _ = writeln!(
            b.body,
            "<tr><td>{}</td><td class=\"text\">{}</td><td>{}</td></tr>",
            sub.id,
            escape(&classes.join(", ")),
            sub.captured
                .map(|c| format!("{:.1}%", 100.0 * c))
                .unwrap_or_else(|| "-".into())
        );
    }
    b.push("</tbody></table>\n");
    let _ = writeln!(
        b.body,
        "<p class=\"note\">{} subsets found by distill-cluster{}{} from {} store rows; together they capture {} of the ensemble's off-diagonal confusion mass. Parenthesised classes joined a subset by overlap. Left to the generalist: {}.{}</p>",
        s.subsets.len(),
        s.method
            .as_deref()
            .map(|m| format!(" ({m}"))
            .unwrap_or_default(),
        match (s.method.is_some(), s.temperature) {
            (true, Some(t)) => format!(", T = {t})"),
            (true, None) => ")".into(),
            _ => String::new(),
        },
        s.rows
            .map(|r| grouped(r as u64))
            .unwrap_or_else(|| "?".into()),
        s.captured
            .map(|c| format!("{:.1}%", 100.0 * c))
            .unwrap_or_else(|| "?".into()),
        if s.generalist_only.is_empty() {
            "none".to_string()
        } else {
            s.generalist_only
                .iter()
                .map(|&c| {
                    labels
                        .get(c as usize)
                        .cloned()
                        .unwrap_or_else(|| c.to_string())
                })
                .collect::<Vec<_>>()
                .join(", ")
        },
        s.ari_vs_true_groups
            .map(|a| format!(" Adjusted Rand index against the data set's true groups: {a:.3}."))
            .unwrap_or_default()
    );
    b.push("</section>\n");
    Ok(())
}

fn tradeoffs(b: &mut Builder, inputs: &Inputs, palette: &Palette) -> Result<(), Error> {
    let Some((_, m)) = &inputs.metrics else {
        return Ok(());
    };
    b.push("<section><h2>What it costs</h2>\n<div class=\"figs\">\n");
    let point = |e: &Entry, x: f64| Point {
        name: e.name.clone(),
        color: palette.color(&e.name),
        x,
        y: 100.0 * e.error_rate,
    };
    let by_size: Vec<Point> = m
        .entries
        .iter()
        .map(|e| point(e, e.parameters as f64))
        .collect();
    let svg = plot::tradeoff(
        "fig-tradeoff-size",
        "Error against size",
        "parameters (log scale)",
        "test error (%)",
        &by_size,
        (600, 400),
    )?;
    b.figure(
        svg,
        "fig-tradeoff-size",
        "One point per model and ensemble: what a distillation buys is a point far to the left at almost the same height.",
    );
    let by_latency: Vec<Point> = m
        .entries
        .iter()
        .filter_map(|e| e.latency_ms_batch1.map(|l| point(e, l)))
        .collect();
    if by_latency.is_empty() {
        b.push("</div>\n");
        b.note("No latency plot: the evaluation ran with --latency-runs 0.");
    } else {
        let svg = plot::tradeoff(
            "fig-tradeoff-latency",
            "Error against latency",
            "median latency of one row, ms (log scale)",
            "test error (%)",
            &by_latency,
            (600, 400),
        )?;
        b.figure(
            svg,
            "fig-tradeoff-latency",
            "Latency at batch 1 on this machine; an ensemble's is the sum of its members'.",
        );
        b.push("</div>\n");
    }
    b.push("</section>\n");
    Ok(())
}

fn specialists(b: &mut Builder, inputs: &Inputs) -> Result<(), Error> {
    let result = inputs
        .metrics
        .as_ref()
        .and_then(|(_, m)| m.specialists.as_ref());
    if result.is_none() && inputs.manifest.is_none() {
        return Ok(());
    }
    b.push("<section><h2>Specialists</h2>\n");
    if let Some(s) = result {
        let mut facts = Vec::new();
        if let (Some(g), Some(c)) = (s.generalist_errors, s.combined_errors) {
            facts.push(format!(
                "errors {} with the generalist alone, {} with its specialists",
                grouped(g as u64),
                grouped(c as u64)
            ));
        }
        if let Some(r) = s.relative_error_reduction {
            facts.push(format!("relative error reduction {:.2}%", 100.0 * r));
        }
        if let Some(n) = s.top_n {
            facts.push(format!(
                "specialists consulted for the generalist's top {n} classes"
            ));
        }
        if let Some(r) = s.rows_per_second {
            facts.push(format!("{} rows/s", grouped(r.round() as u64)));
        }
        if !facts.is_empty() {
            let _ = writeln!(b.body, "<p>{}.</p>", escape(&facts.join("; ")));
        }
        if s.by_covering.is_empty() {
            b.note("metrics.json has no `by_covering` groups: no gain chart.");
        } else {
            let groups: Vec<(usize, usize, Option<f64>)> = s
                .by_covering
                .iter()
                .map(|c| (c.covering, c.count, c.gain()))
                .collect();
            let svg = plot::gain_by_covering(
                "fig-specialists",
                "Gain by number of specialists covering the true class",
                &groups,
                (700, 400),
            )?;
            b.push("<div class=\"figs\">\n");
            b.figure(
                svg,
                "fig-specialists",
                "As in the paper's Table 4: test rows grouped by how many specialists cover their true class, and the relative change in correct rows when the specialists join the generalist.",
            );
            b.push("</div>\n");
        }
    } else {
        b.note(
            "metrics.json has no `specialists` result: the specialist system was not evaluated.",
        );
    }
    if let Some((path, man)) = &inputs.manifest {
        let _ = writeln!(
            b.body,
            "<p class=\"note\">From <code>{}</code>: generalist <code>{}</code>, {} specialists.</p>",
            escape(&path.display().to_string()),
            escape(&man.generalist.path),
            man.specialists.len()
        );
        b.push("<table><thead><tr><th>id</th><th class=\"text\">classes</th><th>epochs</th><th>validation errors</th><th class=\"text\">file</th><th class=\"text\">SHA-256</th></tr></thead><tbody>\n");
        for s in &man.specialists {
            let classes: Vec<String> = s.classes.iter().map(u32::to_string).collect();
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{} / {}</td><td class=\"text\">{}</td><td class=\"hash\">{}</td></tr>",
                s.id,
                escape(&classes.join(", ")),
                s.epochs,
                s.validation_errors,
                s.validation_rows,
                escape(&s.path),
                escape(short_hash(&s.sha256))
            );
        }
        b.push("</tbody></table>\n");
    }
    b.push("</section>\n");
    Ok(())
}

fn short_hash(h: &str) -> &str {
    h.get(..16).unwrap_or(h)
}

fn kv(b: &mut Builder, key: &str, value: &str) {
    let _ = writeln!(
        b.body,
        "<tr><th class=\"text\">{}</th><td>{value}</td></tr>",
        escape(key)
    );
}

fn hash_of(path: &Path) -> String {
    distill_core::sha256_file(path).unwrap_or_else(|_| "unreadable".into())
}

fn provenance(b: &mut Builder, inputs: &Inputs) {
    b.push("<section id=\"provenance\"><h2>Provenance</h2>\n<table class=\"kv\"><tbody>\n");
    kv(b, "distill-report", &escape(distill_core::TOOL_VERSION));
    if let Some(crate::PipelineFiles {
        path: p,
        sha256: hash,
        lock,
    }) = &inputs.pipeline
    {
        kv(
            b,
            "pipeline",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span>",
                escape(&p.display().to_string()),
                escape(hash)
            ),
        );
        match lock {
            Some((l, h)) => kv(
                b,
                "lock",
                &format!(
                    "<code>{}</code> <span class=\"hash\">{}</span>",
                    escape(&l.display().to_string()),
                    escape(h)
                ),
            ),
            None => kv(b, "lock", "none (the pipeline has not run)"),
        }
    }
    if let Some((p, m)) = &inputs.metrics {
        kv(
            b,
            "metrics",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span> (distill-eval {}, schema {})",
                escape(&p.display().to_string()),
                escape(&hash_of(p)),
                escape(&m.tool_version),
                m.schema_version
            ),
        );
        kv(
            b,
            "evaluation data",
            &format!(
                "{} ({}), {} rows, {} classes, provider {}",
                escape(&m.dataset),
                escape(&m.transform),
                m.rows,
                m.classes,
                escape(&m.provider)
            ),
        );
    }
    if let Some((p, s)) = &inputs.store {
        kv(
            b,
            "soft targets",
            &format!(
                "<code>{}</code>: {} ({}), {} classes{}, by distill-teach {}",
                escape(&p.display().to_string()),
                escape(&s.dataset),
                escape(&s.transform),
                s.classes,
                match s.top_k {
                    Some(k) => format!(
                        " (top-{k} layout: the {k} largest logits per row and teacher, the rest as \
                         one mass)"
                    ),
                    None => String::new(),
                },
                escape(&s.tool_version)
            ),
        );
    }
    if let Some((p, m)) = &inputs.manifest {
        kv(
            b,
            "specialists manifest",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span> (distill {})",
                escape(&p.display().to_string()),
                escape(&hash_of(p)),
                escape(&m.tool_version)
            ),
        );
    }
    if let Some((p, _)) = &inputs.specialists {
        kv(
            b,
            "subsets",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span>",
                escape(&p.display().to_string()),
                escape(&hash_of(p))
            ),
        );
    }
    b.push("</tbody></table>\n");
    if let Some((_, s)) = &inputs.store {
        b.push("<h3>Teachers</h3><table><thead><tr><th class=\"text\">teacher</th><th class=\"text\">file</th><th class=\"text\">output</th><th class=\"text\">SHA-256</th></tr></thead><tbody>\n");
        for t in &s.teachers {
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\"><code>{}</code></td><td class=\"text\">{}</td><td class=\"hash\">{}</td></tr>",
                escape(&t.name),
                escape(&t.path),
                t.kind,
                escape(&t.sha256)
            );
        }
        b.push("</tbody></table>\n");
    }
    if let Some((_, m)) = &inputs.metrics {
        b.push("<h3>Models evaluated</h3><table><thead><tr><th class=\"text\">model</th><th class=\"text\">file</th><th class=\"text\">SHA-256</th></tr></thead><tbody>\n");
        for e in m.entries.iter().filter(|e| !e.is_ensemble()) {
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\"><code>{}</code></td><td class=\"hash\">{}</td></tr>",
                escape(&e.name),
                escape(e.path.as_deref().unwrap_or("-")),
                escape(e.sha256.as_deref().unwrap_or("-"))
            );
        }
        b.push("</tbody></table>\n");
    }
    if !inputs.stages.is_empty() {
        b.push("<h3>Stages</h3><table><thead><tr><th class=\"text\">stage</th><th class=\"text\">kind</th><th class=\"text\">state</th><th>seconds</th><th class=\"text\">command</th></tr></thead><tbody>\n");
        for s in &inputs.stages {
            // A report stage is `started` in the lock while it draws this page.
            let drawing = s.kind == "report" && s.state == "started";
            let class = match s.state.as_str() {
                "complete" => "state-complete",
                _ if drawing => "state-complete",
                "started" => "state-started",
                _ => "state-never",
            };
            let state = if drawing {
                "drawing this page"
            } else {
                s.state.as_str()
            };
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text {class}\">{}</td><td>{}</td><td class=\"command hash\">{}</td></tr>",
                escape(&s.name),
                escape(&s.kind),
                escape(state),
                s.seconds.map(|v| format!("{v:.1}")).unwrap_or_default(),
                escape(&s.command)
            );
        }
        b.push("</tbody></table>\n");
    }
    b.push("</section>\n");
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
