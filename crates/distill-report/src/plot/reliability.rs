//! Reliability diagrams: calibration by confidence bin.

use super::{GRID, INK, MUTED, font, render, text};
use crate::ReportError;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// A reliability diagram: each confidence bin's accuracy as a bar whose width is in proportion
/// to the bin's rows (the fullest bin spans its whole bin, a bin of one row is a hairline), its
/// row count written above it, the mean confidence as a dot, and the diagonal of perfect
/// calibration.
pub struct Reliability<'a> {
    pub title: &'a str,
    pub color: RGBColor,
    /// `(lower, upper, rows, correct, mean confidence)` per bin.
    pub bins: &'a [(f64, f64, usize, usize, f64)],
    pub ece: f64,
}

/// See [`Reliability`].
pub fn reliability(id: &str, r: &Reliability<'_>, size: (u32, u32)) -> Result<String, ReportError> {
    let total: usize = r.bins.iter().map(|b| b.2).sum();
    let most = r.bins.iter().map(|b| b.2).max().unwrap_or(0).max(1);
    render(id, r.title, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(r.title, font(15).color(&INK))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(48)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_labels(6)
            .y_labels(6)
            .x_desc("confidence")
            .y_desc("accuracy")
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style(font(12).color(&INK))
            .axis_desc_style(font(13).color(&INK))
            .draw()?;
        chart.draw_series(r.bins.iter().filter(|b| b.2 > 0).map(|b| {
            let acc = b.3 as f64 / b.2 as f64;
            let (lo, hi) = bar_span(b.0, b.1, b.2, most);
            Rectangle::new([(lo, 0.0), (hi, acc)], r.color.mix(0.75).filled())
        }))?;
        chart.draw_series(r.bins.iter().filter(|b| b.2 > 0).map(|b| {
            let acc = b.3 as f64 / b.2 as f64;
            Text::new(
                distill_progress::grouped(b.2 as u64),
                ((b.0 + b.1) / 2.0, acc + 0.01),
                text(9, &MUTED, HPos::Center, VPos::Bottom).transform(FontTransform::Rotate270),
            )
        }))?;
        chart.draw_series(
            r.bins
                .iter()
                .filter(|b| b.2 > 0)
                .map(|b| Circle::new((b.4, b.3 as f64 / b.2 as f64), 3, INK.filled())),
        )?;
        chart.draw_series(DashedLineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            5,
            4,
            ShapeStyle::from(&INK).stroke_width(1),
        ))?;
        chart.draw_series(std::iter::once(Text::new(
            format!(
                "ECE {:.4}, {} rows; bar width and the number above each bar: its rows",
                r.ece,
                distill_progress::grouped(total as u64)
            ),
            (0.04, 0.94),
            text(13, &INK, HPos::Left, VPos::Top),
        )))?;
        Ok(())
    })
}

/// The horizontal extent of a bin's bar: centred in the bin `[lower, upper]`, its width the bin's
/// width times `rows / most` (at least a hairline of 0.002).
pub fn bar_span(lower: f64, upper: f64, rows: usize, most: usize) -> (f64, f64) {
    let full = (upper - lower - 0.008).max(0.0);
    let width = (full * rows as f64 / most.max(1) as f64).max(0.002);
    let mid = (lower + upper) / 2.0;
    (mid - width / 2.0, mid + width / 2.0)
}
