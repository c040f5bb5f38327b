//! The figures, drawn with `plotters` on its SVG backend: each function returns one `<svg>`
//! element (no XML prologue, no namespace URL) ready to be inlined in the page.
//!
//! Colours: one categorical palette, a model keeping its colour in every figure ([`Palette`]);
//! matrices use a white-to-red ramp, with `sqrt` scaling so that rare confusions stay visible.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;

type DrawResult = Result<(), Box<dyn std::error::Error>>;

const FONT: &str = "sans-serif";
const GRID: RGBColor = RGBColor(220, 220, 220);
const INK: RGBColor = RGBColor(40, 40, 40);
const MUTED: RGBColor = RGBColor(110, 110, 110);
const DIAGONAL: RGBColor = RGBColor(214, 222, 232);
const CELL_EDGE: RGBColor = RGBColor(235, 235, 235);

/// Tableau's 10 categorical colours.
const CATEGORICAL: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A colour per model name, the same in every figure of the page.
#[derive(Clone, Debug, Default)]
pub struct Palette {
    names: Vec<String>,
}

impl Palette {
    /// Names in the order they first appear get the palette's colours in order.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut p = Palette::default();
        for n in names {
            if !p.names.iter().any(|m| m == n) {
                p.names.push(n.to_string());
            }
        }
        p
    }

    /// The colour of `name` (grey for a name the palette was not given).
    pub fn color(&self, name: &str) -> RGBColor {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| CATEGORICAL[i % CATEGORICAL.len()])
            .unwrap_or(CATEGORICAL[7])
    }

    /// The colour as CSS `#rrggbb`, for the table's swatches.
    pub fn css(&self, name: &str) -> String {
        let RGBColor(r, g, b) = self.color(name);
        format!("#{r:02x}{g:02x}{b:02x}")
    }
}

/// A white-yellow-orange-red ramp at `t` in `[0, 1]` (ColorBrewer's YlOrRd anchors, linear in
/// between): light cells for rare confusions, so that the counts written on them stay readable.
pub fn heat(t: f64) -> RGBColor {
    const H: [[f64; 3]; 5] = [
        [255.0, 255.0, 255.0],
        [255.0, 237.0, 160.0],
        [254.0, 178.0, 76.0],
        [240.0, 59.0, 32.0],
        [128.0, 0.0, 38.0],
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let c = |k: usize| (H[i][k] + f * (H[i + 1][k] - H[i][k])).round() as u8;
    RGBColor(c(0), c(1), c(2))
}

/// Renders `draw` on a `width × height` SVG canvas and returns the `<svg>` element with `id`
/// and an accessible label.
fn render(
    id: &str,
    label: &str,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| ReportError::Plot(format!("{id}: {e}")))?;
        draw(&root).map_err(|e| ReportError::Plot(format!("{id}: {e}")))?;
        root.present()
            .map_err(|e| ReportError::Plot(format!("{id}: {e}")))?;
    }
    let start = svg.find("<svg").ok_or_else(|| {
        ReportError::Plot(format!("{id}: the SVG backend wrote no <svg> element"))
    })?;
    let svg = svg[start..].replacen(
        " xmlns=\"http://www.w3.org/2000/svg\"",
        &format!(
            " id=\"{id}\" role=\"img\" aria-label=\"{}\"",
            crate::html::escape(label)
        ),
        1,
    );
    if !svg.contains(&format!("id=\"{id}\"")) {
        return Err(ReportError::Plot(format!(
            "{id}: the SVG backend's root element changed; cannot label the figure"
        )));
    }
    Ok(svg)
}

/// The font at `size` pixels: plotters' SVG backend writes 1/1.24 of the size it is given.
fn font(size: u32) -> FontDesc<'static> {
    (FONT, f64::from(size) * 1.24).into_font()
}

fn text(size: u32, color: &'static RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from(font(size)).color(color).pos(Pos::new(h, v))
}

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

/// A reliability diagram: each confidence bin's accuracy as a bar at its mean confidence,
/// the diagonal of perfect calibration, and the rows per bin as a grey strip (height growing
/// with the square root of the count, so that sparse bins still show).
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
        // Rows per bin, relative to the fullest bin, as a low strip along the bottom.
        chart.draw_series(r.bins.iter().filter(|b| b.2 > 0).map(|b| {
            let h = 0.15 * (b.2 as f64 / most as f64).sqrt();
            Rectangle::new([(b.0, 0.0), (b.1, h)], MUTED.mix(0.35).filled())
        }))?;
        chart.draw_series(r.bins.iter().filter(|b| b.2 > 0).map(|b| {
            let acc = b.3 as f64 / b.2 as f64;
            Rectangle::new(
                [(b.0 + 0.004, 0.0), (b.1 - 0.004, acc)],
                r.color.mix(0.75).filled(),
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
            format!("ECE {:.4}, {total} rows", r.ece),
            (0.04, 0.94),
            text(13, &INK, HPos::Left, VPos::Top),
        )))?;
        Ok(())
    })
}

/// One point of a scatter plot, labelled.
pub struct Point {
    pub name: String,
    pub color: RGBColor,
    pub x: f64,
    pub y: f64,
}

/// A labelled scatter plot with a logarithmic x axis: the trade-off of error against a cost.
pub fn tradeoff(
    id: &str,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[Point],
    size: (u32, u32),
) -> Result<String, ReportError> {
    let positive: Vec<&Point> = points
        .iter()
        .filter(|p| p.x > 0.0 && p.x.is_finite())
        .collect();
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

/// An axis tick: as many decimals as the axis's range needs.
fn axis_number(v: f64, max: f64) -> String {
    if max >= 20.0 {
        format!("{v:.0}")
    } else if max >= 2.0 {
        format!("{v:.1}")
    } else if max >= 0.2 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// `1234567` as `1.2M`, `2500` as `2.5k`, small numbers as they are.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let (scaled, unit) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let digits = if a >= 1.0 { 3 } else { 4 };
    let mut n = format!("{scaled:.digits$}");
    if n.contains('.') {
        n = n.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{n}{unit}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_shortened() {
        assert_eq!(short_number(1_990_000.0), "1.99M");
        assert_eq!(short_number(2_000.0), "2k");
        assert_eq!(short_number(12.0), "12");
        assert_eq!(short_number(0.05), "0.05");
    }

    #[test]
    fn figures_are_labelled_svg_without_urls() {
        let svg = lines(
            "fig-x",
            "curves",
            "epoch",
            "error",
            &[Line {
                name: "student".into(),
                color: CATEGORICAL[0],
                dashed: false,
                points: vec![(1.0, 0.2), (2.0, 0.1)],
            }],
            (400, 300),
        )
        .unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("id=\"fig-x\""),
            "{svg:.200}"
        );
        assert!(!svg.contains("http"), "{svg:.200}");
        assert!(svg.contains("\nstudent\n</text>"), "{svg}");
        let palette = Palette::new(["a", "b", "a"]);
        assert_eq!(palette.css("a"), "#1f77b4");
        assert_eq!(palette.css("b"), "#ff7f0e");
    }
}
