//! The figures, drawn with `plotters` on its SVG backend: each function returns one `<svg>`
//! element (no XML prologue, no namespace URL) ready to be inlined in the page.
//!
//! Colours: one categorical palette, a model keeping its colour in every figure ([`Palette`]);
//! matrices use a white-to-red ramp, with `sqrt` scaling so that rare confusions stay visible.

mod bars;
mod heatmap;
mod lines;
pub mod reliability;
mod tradeoff;

pub use bars::{
    Bars, CoveringErrors, errors_by_covering, gain_by_covering, grouped_bars, integer_ticks,
    tick_decimals,
};
pub use heatmap::{Matrix, heatmap};
pub use lines::{Line, lines};
pub use reliability::{Reliability, reliability};
pub use tradeoff::{Point, tradeoff};

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
