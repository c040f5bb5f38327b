//! The page's sections on the class clusters, the cost/accuracy trade-offs and the specialists.

use std::fmt::Write as _;

use super::{Builder, class_labels, escape, grouped, short_hash};
use crate::inputs::Entry;
use crate::plot::{self, Matrix, Palette, Point};
use crate::{Inputs, ReportError};

pub(super) fn clusters(b: &mut Builder, inputs: &Inputs) -> Result<(), ReportError> {
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
            .filter(|e| e.metrics.confusion.len() == s.classes)
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
                                e.metrics.confusion[i][i] as f64
                            } else {
                                (e.metrics.confusion[i][j] + e.metrics.confusion[j][i]) as f64
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
                    "How often {} confuses each pair of classes on {} (either way round), with the classes reordered by the specialist subsets of {}; blue squares outline each subset's own classes, classes left to the generalist come last; the diagonal holds the correctly classified rows.",
                    e.name,
                    m.rows_phrase(),
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

pub(super) fn tradeoffs(
    b: &mut Builder,
    inputs: &Inputs,
    palette: &Palette,
) -> Result<(), ReportError> {
    let Some((_, m)) = &inputs.metrics else {
        return Ok(());
    };
    b.push("<section><h2>What it costs</h2>\n<div class=\"figs\">\n");
    let sources = m.variant_sources();
    // The entries with a cost `x`, each a point labelled by its name (a quantised variant by its
    // method) and joined to its float model's point when that has a cost too.
    let points = |x: &dyn Fn(&Entry) -> Option<f64>| -> Vec<Point> {
        let kept: Vec<usize> = (0..m.entries.len())
            .filter(|&k| x(&m.entries[k]).is_some())
            .collect();
        kept.iter()
            .map(|&k| {
                let e = &m.entries[k];
                let joins = sources[k].and_then(|s| kept.iter().position(|&j| j == s));
                Point {
                    name: match (&e.variant_of, joins) {
                        (Some(v), Some(_)) => v.method.clone(),
                        _ => e.name.clone(),
                    },
                    color: palette.color(&e.name),
                    x: x(e).unwrap_or_default(),
                    y: 100.0 * e.metrics.error_rate,
                    joins,
                }
            })
            .collect()
    };
    let by_size = points(&|e| Some(e.file_bytes as f64));
    let svg = plot::tradeoff(
        "fig-tradeoff-size",
        "Error against size",
        "file size, bytes (log scale)",
        "test error (%)",
        &by_size,
        (600, 400),
    )?;
    b.figure(
        svg,
        "fig-tradeoff-size",
        "One point per model and ensemble (an ensemble's size is its members' sum): what a distillation buys is a point far to the left at almost the same height. A quantised model, labelled by its method, is joined by a line to the float model it was made from.",
    );
    let by_latency = points(&|e| e.latency_ms_batch1);
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
            "Latency at batch 1 on this machine; an ensemble's is the sum of its members'. Quantised models are joined to their float model as above.",
        );
        b.push("</div>\n");
    }
    b.push("</section>\n");
    Ok(())
}

pub(super) fn specialists(b: &mut Builder, inputs: &Inputs) -> Result<(), ReportError> {
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
            facts.push(format!(
                "the combination step alone (after both models ran) handles {} rows/s",
                grouped(r.round() as u64)
            ));
        }
        if !facts.is_empty() {
            let _ = writeln!(b.body, "<p>{}.</p>", escape(&facts.join("; ")));
        }
        let groups: Option<Vec<plot::CoveringErrors>> = s
            .by_covering
            .iter()
            .map(|c| {
                Some(plot::CoveringErrors {
                    covering: c.covering,
                    rows: c.count,
                    generalist_errors: c.count.checked_sub(c.generalist_correct?)?,
                    combined_errors: c.count.checked_sub(c.combined_correct?)?,
                })
            })
            .collect();
        match groups {
            _ if s.by_covering.is_empty() => {
                b.note("metrics.json has no `by_covering` groups: no chart of errors by group.");
            }
            None => {
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
                    "As in the paper's Table 4: rows grouped by how many specialists cover their true class, and the relative change in correct rows when the specialists join the generalist (n/a where metrics.json lacks the group's correct-row counts, so its errors cannot be drawn).",
                );
                b.push("</div>\n");
            }
            Some(groups) => {
                let svg = plot::errors_by_covering(
                    "fig-specialists",
                    "Errors by number of active specialists covering the true class",
                    &groups,
                    (700, 400),
                )?;
                b.push("<div class=\"figs\">\n");
                b.figure(
                    svg,
                    "fig-specialists",
                    "As in the paper's Table 4: rows grouped by how many active specialists cover their true class, with the errors of the generalist alone (grey) and with its specialists (blue) in each group; the groups' differences add up to the change in total errors above.",
                );
                b.push("</div>\n");
            }
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
        let used = man.specialists.iter().filter(|s| s.used).count();
        let _ = writeln!(
            b.body,
            "<p class=\"note\">Inference uses {used} of the {} specialists: those whose addition lowered the generalist's errors on the held-out validation rows (or kept them and lowered the NLL). Validation effect: the system's validation errors with and without the specialist.</p>",
            man.specialists.len()
        );
        b.push("<table id=\"specialists-manifest\"><thead><tr><th>id</th><th class=\"text\">classes</th><th>epochs</th><th>validation errors</th><th class=\"text\">used</th><th class=\"text\">validation effect</th><th class=\"text\">file</th><th class=\"text\">SHA-256</th></tr></thead><tbody>\n");
        for s in &man.specialists {
            let classes: Vec<String> = s.classes.iter().map(u32::to_string).collect();
            let effect = match &s.validation_effect {
                Some(e) => {
                    let delta = e.errors_with as i64 - e.errors_without as i64;
                    format!(
                        "{} errors with, {} without ({delta:+}) on {} rows; NLL {:.4} with, {:.4} without",
                        grouped(e.errors_with as u64),
                        grouped(e.errors_without as u64),
                        grouped(e.rows as u64),
                        e.nll_with,
                        e.nll_without
                    )
                }
                None => "not measured".to_string(),
            };
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\">{}</td><td>{}</td><td>{} / {}</td><td class=\"text\" data-field=\"used\">{}</td><td class=\"text\" data-field=\"validation_effect\">{}</td><td class=\"text\">{}</td><td class=\"hash\">{}</td></tr>",
                s.id,
                escape(&classes.join(", ")),
                s.epochs,
                s.validation_errors,
                s.validation_rows,
                if s.used { "yes" } else { "no" },
                escape(&effect),
                escape(&s.path),
                escape(short_hash(&s.sha256))
            );
        }
        b.push("</tbody></table>\n");
    }
    b.push("</section>\n");
    Ok(())
}
