//! Bar charts: grouped bars per category, and the specialists' gain by covering.

use super::{CATEGORICAL, GRID, INK, axis_number, font, render, text};
use crate::ReportError;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// One group of bars: a name (legend) and a value per category.
pub struct Bars {
    pub name: String,
    pub color: RGBColor,
    pub values: Vec<f64>,
}

/// Grouped vertical bars, one group per category; `x_desc` and `y_desc` are the axes' titles.
pub fn grouped_bars(
    id: &str,
    title: &str,
    categories: &[String],
    (x_desc, y_desc): (&str, &str),
    groups: &[Bars],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let n = categories.len().max(1);
    let y_max = groups
        .iter()
        .flat_map(|g| g.values.iter().copied())
        .fold(0.0f64, f64::max);
    // Headroom for the legend above the tallest bar.
    let y_max = if y_max > 0.0 { y_max * 1.45 } else { 1.0 };
    let k = groups.len().max(1) as f64;
    render(id, title, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17).color(&INK))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..y_max)?;
        let cats = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_labels(n.min(60))
            .x_label_formatter(&move |v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    cats.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc(x_desc)
            .y_desc(y_desc)
            .y_label_formatter(&|v| axis_number(*v, y_max))
            .label_style(font(13).color(&INK))
            .axis_desc_style(font(14).color(&INK))
            .draw()?;
        let width = 0.8 / k;
        for (g, group) in groups.iter().enumerate() {
            let color = group.color;
            let offset = -0.4 + g as f64 * width;
            chart
                .draw_series(group.values.iter().enumerate().map(|(i, &v)| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x, 0.0), (x + width * 0.92, v)], color.filled())
                }))?
                .label(&group.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        if groups.len() > 1 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(GRID)
                .label_font(font(13).color(&INK))
                .draw()?;
        }
        Ok(())
    })
}

/// One group of the specialists' chart: rows whose true class `covering` active specialists
/// cover, how many there are, and the errors of the generalist alone and with its specialists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoveringErrors {
    pub covering: usize,
    pub rows: usize,
    pub generalist_errors: usize,
    pub combined_errors: usize,
}

/// Whole-number ticks from 0 to at least `max`: a step of 1, 2 or 5 times a power of ten, chosen
/// for at most about six ticks, so that no two ticks read the same.
pub fn integer_ticks(max: usize) -> Vec<usize> {
    let max = max.max(1);
    let mut step = 1usize;
    loop {
        for m in [1usize, 2, 5] {
            let s = step.saturating_mul(m);
            if max / s <= 5 {
                let top = max.div_ceil(s) * s;
                return (0..=top / s).map(|k| k * s).collect();
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The specialists' chart (after the paper's Table 4): for each group of rows by the number of
/// active specialists covering the true class, the errors of the generalist alone and of the
/// generalist with its specialists, side by side, each bar labelled with its count, on an axis
/// of whole-number error counts.
pub fn errors_by_covering(
    id: &str,
    title: &str,
    groups: &[CoveringErrors],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let n = groups.len().max(1);
    let most = groups
        .iter()
        .map(|g| g.generalist_errors.max(g.combined_errors))
        .max()
        .unwrap_or(0);
    let ticks = integer_ticks(most + most / 5 + 1);
    let top = ticks.last().copied().unwrap_or(1) as f64;
    let series = [
        ("generalist alone", CATEGORICAL[7]),
        ("with its specialists", CATEGORICAL[0]),
    ];
    render(id, title, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17).color(&INK))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..top)?;
        let labels: Vec<String> = groups
            .iter()
            .map(|g| {
                format!(
                    "{} ({} rows)",
                    g.covering,
                    distill_progress::grouped(g.rows as u64)
                )
            })
            .collect();
        let tick_values: Vec<f64> = ticks.iter().map(|&t| t as f64).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(n)
            .x_label_formatter(&move |v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_labels(0)
            .x_desc("active specialists covering the true class (rows in the group)")
            .y_desc("errors")
            .label_style(font(13).color(&INK))
            .axis_desc_style(font(14).color(&INK))
            .draw()?;
        for &t in &tick_values {
            chart.draw_series(std::iter::once(PathElement::new(
                [(-0.5, t), (n as f64 - 0.5, t)],
                GRID,
            )))?;
        }
        chart.draw_series(tick_values.iter().map(|&t| {
            Text::new(
                format!("{}", t as u64),
                (-0.5, t),
                text(13, &INK, HPos::Right, VPos::Center),
            )
        }))?;
        for (s, (name, color)) in series.iter().enumerate() {
            let color = *color;
            let value = |g: &CoveringErrors| {
                if s == 0 {
                    g.generalist_errors
                } else {
                    g.combined_errors
                }
            };
            let x0 = |i: usize| i as f64 - 0.38 + s as f64 * 0.38;
            chart
                .draw_series(groups.iter().enumerate().map(|(i, g)| {
                    Rectangle::new(
                        [(x0(i) + 0.02, 0.0), (x0(i) + 0.36, value(g) as f64)],
                        color.filled(),
                    )
                }))?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart.draw_series(groups.iter().enumerate().map(|(i, g)| {
                Text::new(
                    format!("{} err.", value(g)),
                    (x0(i) + 0.19, value(g) as f64),
                    text(12, &INK, HPos::Center, VPos::Bottom),
                )
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(GRID)
            .label_font(font(13).color(&INK))
            .draw()?;
        Ok(())
    })
}

/// The specialists' chart for results that lack the groups' correct-row counts: the relative gain
/// in correct rows by the number of specialists covering the true class, with each group's rows
/// written on its bar (`n/a` where the gain is unknown), on ticks with as many decimals as their
/// spacing needs, so that no two read the same.
pub fn gain_by_covering(
    id: &str,
    title: &str,
    groups: &[(usize, usize, Option<f64>)],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let n = groups.len().max(1);
    let gains: Vec<f64> = groups.iter().map(|g| 100.0 * g.2.unwrap_or(0.0)).collect();
    let hi = gains.iter().copied().fold(0.0f64, f64::max);
    let lo = gains.iter().copied().fold(0.0f64, f64::min);
    let span = (hi - lo).max(0.5);
    let (lo, hi) = (lo - 0.08 * span * f64::from(lo < 0.0), hi + 0.2 * span);
    let decimals = tick_decimals(hi - lo);
    render(id, title, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17).color(&INK))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, lo..hi)?;
        let labels: Vec<String> = groups.iter().map(|g| g.0.to_string()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_labels(n)
            .x_label_formatter(&move |v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .x_desc("specialists covering the true class")
            .y_desc("relative gain in correct rows (%)")
            .y_labels(6)
            .y_label_formatter(&move |v| format!("{v:.decimals$}"))
            .label_style(font(13).color(&INK))
            .axis_desc_style(font(14).color(&INK))
            .draw()?;
        chart.draw_series(groups.iter().enumerate().map(|(i, g)| {
            let v = 100.0 * g.2.unwrap_or(0.0);
            let color = if v >= 0.0 {
                CATEGORICAL[2]
            } else {
                CATEGORICAL[3]
            };
            Rectangle::new(
                [(i as f64 - 0.35, 0.0), (i as f64 + 0.35, v)],
                color.filled(),
            )
        }))?;
        chart.draw_series(groups.iter().enumerate().map(|(i, g)| {
            let v = 100.0 * g.2.unwrap_or(0.0);
            let label = match g.2 {
                Some(_) => format!("{v:+.2}% ({} rows)", g.1),
                None => format!("n/a ({} rows)", g.1),
            };
            Text::new(
                label,
                (i as f64, v.max(0.0)),
                text(13, &INK, HPos::Center, VPos::Bottom),
            )
        }))?;
        Ok(())
    })
}

/// Decimals that tell apart about six ticks spread over `span` (their step, or half of it, shown
/// exactly): none for steps of 10 and more, else one more than the step's first significant digit
/// needs.
pub fn tick_decimals(span: f64) -> usize {
    let step = (span / 6.0).abs().max(1e-9);
    if step >= 10.0 {
        return 0;
    }
    let digits = (-step.log10()).ceil().max(0.0) as usize;
    digits.min(8) + 1
}
