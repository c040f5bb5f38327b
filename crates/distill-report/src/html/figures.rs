//! The page's first sections: the header, the results table, the learning curves, the confusion
//! matrices and the calibration figure (how good, how it learned, what it still confuses, whether
//! it is calibrated).

use std::fmt::Write as _;

use super::{Builder, class_labels, escape, focus, format_field, grouped, slug};
use crate::plot::{self, Bars, Line, Matrix, Palette, Reliability};
use crate::{Inputs, ReportError};

pub(super) fn header(b: &mut Builder, inputs: &Inputs) {
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
        if m.all_rows() {
            let _ = writeln!(
                b.body,
                "<p class=\"missing\" id=\"all-rows\"><b>Not a test split:</b> the figures are on {}; \
                 a model trained on these rows is scored on its own training data. Give distill-eval a \
                 folder with train.parquet and test.parquet (or a held-out file) for test figures.</p>",
                escape(&m.rows_phrase())
            );
        }
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

pub(super) fn results(b: &mut Builder, inputs: &Inputs, palette: &Palette) {
    b.push("<section><h2>Results</h2>\n");
    let Some((path, m)) = &inputs.metrics else {
        b.note("No results table: metrics.json (the eval stage's output) is missing.");
        b.push("</section>\n");
        return;
    };
    let paper = !inputs.paper.is_empty();
    let variants = m
        .entries
        .iter()
        .any(|e| e.variant_of.as_ref().is_some_and(|v| v.agreement.is_some()));
    let _ = writeln!(
        b.body,
        "<table id=\"results\"><thead><tr><th>model</th><th class=\"text\">type</th><th>parameters</th><th>size</th>\
         <th>errors</th><th>error %</th><th>NLL</th><th>ECE</th><th>agree %</th><th>ms @1</th><th>rows/s @256</th>{}{}</tr></thead><tbody>",
        if variants {
            "<th title=\"share of rows on which a quantised model predicts its float model's class\">float agree %</th><th>max |Δ| vs float</th>"
        } else {
            ""
        },
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
        b.push(&cell(k, "errors", Some(e.metrics.errors as f64)));
        b.push(&cell(k, "error_rate", Some(e.metrics.error_rate)));
        b.push(&cell(k, "nll", Some(e.metrics.nll)));
        b.push(&cell(k, "ece", Some(e.metrics.ece)));
        b.push(&cell(k, "agreement", e.agreement));
        b.push(&cell(k, "latency_ms_batch1", e.latency_ms_batch1));
        b.push(&cell(k, "rows_per_s_batch256", e.rows_per_s_batch256));
        if variants {
            let v = e.variant_of.as_ref();
            b.push(&cell(k, "float_agreement", v.and_then(|v| v.agreement)));
            b.push(&match v.and_then(|v| Some((v.max_abs_diff?, v.max_abs_diff_of.as_deref()))) {
                Some((d, of)) => format!(
                    "<td data-entry=\"{k}\" data-field=\"max_abs_diff\" data-value=\"{d}\">{} {}</td>",
                    format_field("max_abs_diff", d),
                    if of == Some("logits") { "logit" } else { "prob" }
                ),
                None => cell(k, "max_abs_diff", None),
            });
        }
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
            "<tr class=\"system\"><td>generalist + specialists</td><td class=\"text\">system</td><td></td><td></td>{}{}<td></td><td></td><td></td><td></td><td title=\"the system runs the generalist and its specialists, then combines them; the combination step's own rate is given under Specialists\">-</td>{}{}</tr>",
            s.combined_errors
                .map(|v| format!(
                    "<td data-entry=\"specialists\" data-field=\"combined_errors\" data-value=\"{v}\">{}</td>",
                    grouped(v as u64)
                ))
                .unwrap_or_else(|| "<td>-</td>".into()),
            s.combined_errors
                .filter(|_| rows > 0)
                .map(|v| {
                    let rate = v as f64 / rows as f64;
                    format!(
                        "<td data-entry=\"specialists\" data-field=\"error_rate\" data-value=\"{rate}\">{}</td>",
                        format_field("error_rate", rate)
                    )
                })
                .unwrap_or_else(|| "<td>-</td>".into()),
            if variants { "<td></td><td></td>" } else { "" },
            if paper { "<td></td>" } else { "" }
        );
    }
    b.push("</tbody></table>\n");
    let _ = writeln!(
        b.body,
        "<p class=\"note\">From <code>{}</code>: {} rows, {}. Errors, NLL (nats) and ECE (15 bins) after any bias adjustment; \
         agreement with {}; latency is the median of one row, throughput at batch 256{}.{}</p>",
        escape(&path.display().to_string()),
        grouped(m.rows as u64),
        escape(&m.rows_phrase()),
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
    if variants {
        b.note(
            "float agree %: the share of rows on which a quantised model predicts the class of the \
             float model it was made from; max |Δ| vs float: the largest difference between the two \
             models' outputs over every row and class, of the logits (logit) or, when a model \
             outputs probabilities, of the probabilities (prob).",
        );
    }
    for e in m.entries.iter().filter(|e| e.errors_unadjusted.is_some()) {
        let _ = writeln!(
            b.body,
            "<p class=\"note\">{}: {} errors after the bias adjustment, {} before it.</p>",
            escape(&e.name),
            e.metrics.errors,
            e.errors_unadjusted.unwrap_or_default()
        );
    }
    for n in &m.notes {
        b.note(n);
    }
    b.push("</section>\n");
}

pub(super) fn curves(
    b: &mut Builder,
    inputs: &Inputs,
    palette: &Palette,
) -> Result<(), ReportError> {
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
        "Solid: error on the held-out validation rows after each epoch; dashed: error on the training rows during the epoch, as they were trained (with the run's dropout and jitter, where it used any).",
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

pub(super) fn confusions(
    b: &mut Builder,
    inputs: &Inputs,
    palette: &Palette,
) -> Result<(), ReportError> {
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
            .metrics
            .confusion
            .iter()
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect();
        let title = format!("{}: {} errors", e.name, grouped(e.metrics.errors as u64));
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
                "Confusion matrix of {} on {}: rows are true classes, columns predictions; the diagonal (correct) is blue-grey, errors on a square-root colour scale.",
                e.name, m.rows_phrase()
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
                .metrics
                .per_class_errors
                .iter()
                .zip(&e.metrics.per_class_rows)
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
        ("true class", "error (%)"),
        &groups,
        (width, 380),
    )?;
    b.figure(
        svg,
        "fig-per-class",
        "Share of each true class's evaluated rows that are misclassified.",
    );
    b.push("</section>\n");
    Ok(())
}

pub(super) fn calibration(
    b: &mut Builder,
    inputs: &Inputs,
    palette: &Palette,
) -> Result<(), ReportError> {
    b.push("<section><h2>Calibration</h2>\n");
    let Some((_, m)) = &inputs.metrics else {
        b.note("No reliability diagrams: metrics.json is missing.");
        b.push("</section>\n");
        return Ok(());
    };
    if m.entries.iter().all(|e| e.metrics.reliability.is_empty()) {
        b.note("No reliability diagrams: this metrics.json has no `reliability` bins (it was written by an older distill-eval); evaluate again to draw them.");
        b.push("</section>\n");
        return Ok(());
    }
    b.push("<div class=\"figs\">\n");
    for e in m
        .entries
        .iter()
        .filter(|e| !e.metrics.reliability.is_empty())
    {
        let id = format!("fig-reliability-{}", slug(&e.name));
        let bins: Vec<(f64, f64, usize, usize, f64)> = e
            .metrics
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
                ece: e.metrics.ece,
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
