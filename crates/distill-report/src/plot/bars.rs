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

/// Grouped vertical bars, one group per category.
pub fn grouped_bars(
    id: &str,
    title: &str,
    categories: &[String],
    y_desc: &str,
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

/// The specialists' Table-4-style chart: relative gain in correct rows by the number of
/// specialists covering the true class, with each group's test rows written on its bar.
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
            .y_label_formatter(&|v| format!("{v:.1}"))
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
