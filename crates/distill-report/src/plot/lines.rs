//! Line charts: learning curves.

use super::{GRID, INK, axis_number, font, render};
use crate::ReportError;
use plotters::prelude::*;

/// One line of a line chart: a name (legend), points, and dashed or solid.
pub struct Line {
    pub name: String,
    pub color: RGBColor,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// A line chart with a legend: learning curves.
pub fn lines(
    id: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Line],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (x_min, x_max) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let (x_min, x_max) = if x_min.is_finite() {
        (x_min, x_max.max(x_min + 1.0))
    } else {
        (0.0, 1.0)
    };
    let y_max = ys.fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.08 } else { 1.0 };
    render(id, title, size, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(17).color(&INK))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(60)
            .build_cartesian_2d(x_min - 0.3..x_max + 0.3, 0f64..y_max)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(((x_max - x_min) as usize + 1).clamp(2, 12))
            .x_label_formatter(&|v| {
                if v.fract().abs() < 1e-9 {
                    format!("{v:.0}")
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| axis_number(*v, y_max))
            .label_style(font(13).color(&INK))
            .axis_desc_style(font(14).color(&INK))
            .draw()?;
        for s in series {
            let style = ShapeStyle::from(&s.color).stroke_width(2);
            let color = s.color;
            if s.dashed {
                chart
                    .draw_series(DashedLineSeries::new(s.points.iter().copied(), 6, 4, style))?
                    .label(&s.name)
                    .legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (8, 0)], color.stroke_width(2))
                            + PathElement::new(vec![(12, 0), (20, 0)], color.stroke_width(2))
                    });
            } else {
                chart
                    .draw_series(LineSeries::new(s.points.iter().copied(), style))?
                    .label(&s.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
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
