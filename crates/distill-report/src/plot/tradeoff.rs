//! Labelled scatter plots on a logarithmic x axis: error against a cost, each variant of a model
//! joined to it by a line.

use super::{GRID, INK, axis_number, font, render, short_number, text};
use crate::ReportError;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

/// One point of a scatter plot, labelled.
pub struct Point {
    /// The label drawn beside the point.
    pub name: String,
    pub color: RGBColor,
    pub x: f64,
    pub y: f64,
    /// The index (in the same slice) of the point this one is a variant of: a straight line in
    /// that point's colour joins the two.
    pub joins: Option<usize>,
}

/// Whether a point can be placed on the logarithmic x axis.
fn shown(p: &Point) -> bool {
    p.x > 0.0 && p.x.is_finite()
}

/// A labelled scatter plot with a logarithmic x axis: the trade-off of error against a cost.
/// Points with a non-positive or non-finite `x` are left out, with their lines.
pub fn tradeoff(
    id: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[Point],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let positive: Vec<&Point> = points.iter().filter(|p| shown(p)).collect();
    let x_lo = positive.iter().map(|p| p.x).fold(f64::INFINITY, f64::min);
    let x_hi = positive.iter().map(|p| p.x).fold(0.0f64, f64::max);
    let (x_lo, x_hi) = if positive.is_empty() {
        (1.0, 10.0)
    } else {
        (x_lo / 2.0, x_hi * 2.5)
    };
    let y_hi = positive.iter().map(|p| p.y).fold(0.0f64, f64::max);
    let y_hi = if y_hi > 0.0 { y_hi * 1.2 } else { 1.0 };
    render(id, title, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17).color(&INK))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), 0f64..y_hi)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .disable_x_mesh()
            .x_labels(0)
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|v| axis_number(*v, y_hi))
            .label_style(font(13).color(&INK))
            .axis_desc_style(font(14).color(&INK))
            .draw()?;
        // The x ticks at 1, 2 and 5 times each power of ten in range, drawn here: plotters'
        // logarithmic key points skip them on short ranges.
        let mut decade = 10f64.powf(x_lo.log10().floor());
        while decade <= x_hi {
            for m in [1.0, 2.0, 5.0] {
                let t = m * decade;
                if t < x_lo || t > x_hi {
                    continue;
                }
                let (tx, ty) = chart.backend_coord(&(t, 0.0));
                root.draw(&PathElement::new(
                    vec![(tx, ty), (tx, ty + 5)],
                    ShapeStyle::from(&INK).stroke_width(1),
                ))?;
                root.draw(&Text::new(
                    short_number(t),
                    (tx, ty + 8),
                    text(13, &INK, HPos::Center, VPos::Top),
                ))?;
            }
            decade *= 10.0;
        }
        for p in points {
            if let Some(source) = p.joins.and_then(|j| points.get(j))
                && shown(p)
                && shown(source)
            {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(source.x, source.y), (p.x, p.y)],
                    ShapeStyle::from(&source.color).stroke_width(2),
                )))?;
            }
        }
        for p in &positive {
            chart.draw_series(std::iter::once(Circle::new(
                (p.x, p.y),
                6,
                p.color.filled(),
            )))?;
        }
        // Labels: each at the first of a few places beside its point that overlaps no label
        // placed before it and no other point (models of one size sit on one vertical line).
        let centres: Vec<(i32, i32)> = positive
            .iter()
            .map(|p| chart.backend_coord(&(p.x, p.y)))
            .collect();
        let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
        let overlaps = |a: (i32, i32, i32, i32), b: (i32, i32, i32, i32)| {
            a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
        };
        for (k, p) in positive.iter().enumerate() {
            let (cx, cy) = centres[k];
            let w = (7.4 * p.name.chars().count() as f64) as i32;
            let h = 16;
            let candidates = [
                (9, -h - 2),
                (9, 2),
                (-9 - w, -h - 2),
                (-9 - w, 2),
                (9, -2 * h - 4),
                (9, h + 6),
                (-9 - w, -2 * h - 4),
                (-9 - w, h + 6),
            ];
            let boxed = |(dx, dy): (i32, i32)| (cx + dx, cy + dy, cx + dx + w, cy + dy + h);
            let free = |b: (i32, i32, i32, i32)| {
                placed.iter().all(|&q| !overlaps(b, q))
                    && centres
                        .iter()
                        .all(|&(x, y)| !overlaps(b, (x - 6, y - 6, x + 6, y + 6)))
            };
            let spot = candidates
                .iter()
                .copied()
                .map(boxed)
                .find(|&b| free(b))
                .unwrap_or_else(|| boxed(candidates[0]));
            placed.push(spot);
            root.draw(&Text::new(
                p.name.clone(),
                (spot.0, spot.1),
                text(13, &INK, HPos::Left, VPos::Top),
            ))?;
        }
        Ok(())
    })
}
