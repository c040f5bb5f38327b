//! Square matrices as heatmaps with labelled rows and columns.

use super::{CELL_EDGE, DIAGONAL, INK, font, heat, render, text};
use crate::ReportError;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A square matrix as a heatmap with labelled rows and columns.
pub struct Matrix<'a> {
    pub title: &'a str,
    /// Row and column labels, in the order the matrix is drawn.
    pub labels: &'a [String],
    /// `values[row][column]`, already in drawing order.
    pub values: &'a [Vec<f64>],
    pub row_desc: &'a str,
    pub col_desc: &'a str,
    /// Draw each cell's value (rounded) when the cells are large enough.
    pub annotate: bool,
    /// Sizes of consecutive blocks to outline along the diagonal (subsets).
    pub blocks: &'a [usize],
}

/// A heatmap: the diagonal in blue-grey (it would dwarf everything else), off-diagonal cells on
/// [`heat`] at `sqrt(value / max)`, and a colour bar.
pub fn heatmap(id: &str, m: &Matrix<'_>, side: u32) -> Result<String, ReportError> {
    let n = m.labels.len().max(1);
    let label_room = 70u32;
    let top = 40u32;
    let bar = 70u32;
    let cell = ((side - label_room - bar) as f64 / n as f64).max(1.0);
    let grid = cell * n as f64;
    let width = label_room + grid.ceil() as u32 + bar;
    let height = top + grid.ceil() as u32 + label_room - 10;
    let max = m
        .values
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.iter().enumerate().filter(move |(j, _)| *j != i))
        .map(|(_, &v)| v)
        .fold(0.0f64, f64::max);
    let show_labels = cell >= 9.0;
    let show_values = m.annotate && cell >= 22.0;
    let cell_font = ((cell * 0.42).clamp(9.0, 14.0)) as u32;
    render(id, m.title, (width, height), |root| {
        let (x0, y0) = (label_room as f64, top as f64);
        root.draw(&Text::new(
            m.title.to_string(),
            ((width / 2) as i32, 10),
            text(17, &INK, HPos::Center, VPos::Top),
        ))?;
        let px = |v: f64| v.round() as i32;
        for (i, row) in m.values.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let color = if i == j {
                    DIAGONAL
                } else if v > 0.0 && max > 0.0 {
                    heat((v.max(0.0) / max).sqrt())
                } else {
                    heat(0.0)
                };
                let (cx, cy) = (x0 + j as f64 * cell, y0 + i as f64 * cell);
                root.draw(&Rectangle::new(
                    [(px(cx), px(cy)), (px(cx + cell), px(cy + cell))],
                    color.filled(),
                ))?;
                if cell >= 6.0 {
                    root.draw(&Rectangle::new(
                        [(px(cx), px(cy)), (px(cx + cell), px(cy + cell))],
                        ShapeStyle::from(&CELL_EDGE).stroke_width(1),
                    ))?;
                }
                if show_values && v > 0.0 {
                    let t = if i == j || max <= 0.0 {
                        0.0
                    } else {
                        (v / max).sqrt()
                    };
                    let ink: &'static RGBColor = if i != j && t > 0.7 { &WHITE } else { &INK };
                    let shown = if v.fract() == 0.0 || v >= 100.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.2}")
                    };
                    root.draw(&Text::new(
                        shown,
                        (px(cx + cell / 2.0), px(cy + cell / 2.0)),
                        text(cell_font, ink, HPos::Center, VPos::Center),
                    ))?;
                }
            }
        }
        let mut start = 0usize;
        for &b in m.blocks {
            if b == 0 {
                continue;
            }
            let (a, z) = (x0 + start as f64 * cell, x0 + (start + b) as f64 * cell);
            let (ay, zy) = (y0 + start as f64 * cell, y0 + (start + b) as f64 * cell);
            root.draw(&Rectangle::new(
                [(px(a), px(ay)), (px(z), px(zy))],
                ShapeStyle::from(&RGBColor(31, 119, 180)).stroke_width(3),
            ))?;
            start += b;
        }
        if show_labels {
            for (k, l) in m.labels.iter().enumerate() {
                let c = px(x0 + (k as f64 + 0.5) * cell);
                let r = px(y0 + (k as f64 + 0.5) * cell);
                root.draw(&Text::new(
                    l.clone(),
                    (px(x0) - 6, r),
                    text(cell_font, &INK, HPos::Right, VPos::Center),
                ))?;
                root.draw(&Text::new(
                    l.clone(),
                    (c, px(y0 + grid) + 6),
                    text(cell_font, &INK, HPos::Center, VPos::Top),
                ))?;
            }
        }
        root.draw(&Text::new(
            m.col_desc.to_string(),
            (px(x0 + grid / 2.0), px(y0 + grid) + 30),
            text(14, &INK, HPos::Center, VPos::Top),
        ))?;
        root.draw(&Text::new(
            m.row_desc.to_string(),
            (14, px(y0 + grid / 2.0)),
            TextStyle::from(font(14).transform(FontTransform::Rotate270))
                .color(&INK)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
        // The colour bar: 0 at the bottom, the largest off-diagonal value at the top.
        let bx = px(x0 + grid) + 14;
        let steps = 48;
        for s in 0..steps {
            let t = s as f64 / (steps - 1) as f64;
            let yb = y0 + grid * (1.0 - (s + 1) as f64 / steps as f64);
            let ya = y0 + grid * (1.0 - s as f64 / steps as f64);
            root.draw(&Rectangle::new(
                [(bx, px(yb)), (bx + 14, px(ya))],
                heat(t).filled(),
            ))?;
        }
        let fmt = |v: f64| {
            if v >= 100.0 || v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        };
        root.draw(&Text::new(
            fmt(max),
            (bx + 18, px(y0)),
            text(12, &INK, HPos::Left, VPos::Top),
        ))?;
        root.draw(&Text::new(
            "0".to_string(),
            (bx + 18, px(y0 + grid)),
            text(12, &INK, HPos::Left, VPos::Bottom),
        ))?;
        Ok(())
    })
}
