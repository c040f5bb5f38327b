//! A PNG heatmap of the clustering matrix with classes reordered by subset.
//!
//! Each cell shows `max(m[i, j], 0)` on a viridis-like scale (dark purple for 0, yellow for the
//! largest off-diagonal value), with colour proportional to `sqrt(value / max)` so that rare
//! confusions stay visible. The diagonal, which would dwarf everything else, is drawn grey.
//! White squares outline each subset's block; the generalist-only classes come last, unframed.
//! To the right, a colour bar runs from 0 (bottom) to the maximum (top). Cells are
//! `1000 / classes` pixels wide, at least 4 and at most 40, up to 500 classes (a matrix of at most
//! 2000 pixels); `2000 / classes` pixels from 501 to 2000 classes; above 2000 classes each pixel
//! averages a block of classes so the matrix stays within 2000 pixels. Where the cells are large
//! enough, each grey diagonal cell carries its class id in black, so the rows can be read.

use ndarray::ArrayView2;

/// Anchor colours of the viridis map at 0, 1/4, 1/2, 3/4 and 1.
const VIRIDIS: [[f64; 3]; 5] = [
    [68.0, 1.0, 84.0],
    [59.0, 82.0, 139.0],
    [33.0, 145.0, 140.0],
    [94.0, 201.0, 98.0],
    [253.0, 231.0, 37.0],
];
const DIAGONAL: [u8; 3] = [128, 128, 128];
const BORDER: [u8; 3] = [255, 255, 255];
const BACKGROUND: [u8; 3] = [255, 255, 255];
const MARGIN: usize = 8;
const BAR_GAP: usize = 12;
const BAR_WIDTH: usize = 16;
const MAX_SIDE: usize = 2000;
const LABEL: [u8; 3] = [0, 0, 0];

/// Digits 0-9 as 3x5 bitmaps, one row of three bits per entry (most significant bit left).
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b001, 0b001, 0b001],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// The colour of `t` in `[0, 1]`.
pub fn viridis(t: f64) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|c| (a[c] + f * (b[c] - a[c])).round() as u8)
}

/// An RGB image being drawn.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&BACKGROUND);
        }
        Canvas { width, height, rgb }
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let o = (y * self.width + x) * 3;
            self.rgb[o..o + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x0: usize, y0: usize, x1: usize, y1: usize, c: [u8; 3]) {
        for y in y0..y1 {
            for x in x0..x1 {
                self.set(x, y, c);
            }
        }
    }

    /// Writes `number` centred in the `size`-pixel square at `(x0, y0)`, in the largest whole
    /// scale of the 3x5 font that leaves a one-pixel rim; nothing when it does not fit.
    fn label(&mut self, x0: usize, y0: usize, size: usize, number: usize) {
        let digits: Vec<usize> = number
            .to_string()
            .bytes()
            .map(|b| usize::from(b - b'0'))
            .collect();
        let glyphs = 4 * digits.len() - 1;
        let scale = (size.saturating_sub(2) / glyphs)
            .min(size.saturating_sub(2) / 5)
            .min(4);
        if scale == 0 {
            return;
        }
        let x = x0 + (size - glyphs * scale) / 2;
        let y = y0 + (size - 5 * scale) / 2;
        for (i, &d) in digits.iter().enumerate() {
            for (row, bits) in DIGITS[d].iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        let px = x + (4 * i + col) * scale;
                        let py = y + row * scale;
                        self.rect(px, py, px + scale, py + scale, LABEL);
                    }
                }
            }
        }
    }
}

/// Renders `m` with rows and columns taken in `order`, framing consecutive blocks of
/// `blocks[i]` classes (the generalist-only classes, after the blocks, are not framed), and
/// returns the PNG file's bytes.
pub fn render(m: ArrayView2<f64>, order: &[usize], blocks: &[usize]) -> Result<Vec<u8>, String> {
    render_within(m, order, blocks, MAX_SIDE)
}

/// [`render`] with a matrix of at most `max_side` pixels.
fn render_within(
    m: ArrayView2<f64>,
    order: &[usize],
    blocks: &[usize],
    max_side: usize,
) -> Result<Vec<u8>, String> {
    let n = order.len();
    if n == 0 {
        return Err("no classes to draw".into());
    }
    let cell = if 4 * n <= max_side {
        (max_side / 2 / n).clamp(4, 40)
    } else {
        (max_side / n).max(1)
    };
    let side = if n <= max_side {
        n * cell
    } else {
        n.div_ceil(n.div_ceil(max_side))
    };
    let max = (0..n)
        .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
        .map(|(a, b)| m[[order[a], order[b]]])
        .fold(0.0f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };

    let width = MARGIN + side + BAR_GAP + BAR_WIDTH + MARGIN;
    let height = MARGIN + side + MARGIN;
    let mut canvas = Canvas::new(width, height);
    // One colour per grid cell (a class pair, or a block of pairs above max_side classes), drawn
    // into one pixel row that is copied to every pixel row of the grid row.
    let (grid, px_per_cell) = if n <= max_side { (n, cell) } else { (side, 1) };
    let span = |g: usize| {
        let (lo, hi) = if n <= max_side {
            (g, g + 1)
        } else {
            (g * n / side, (g + 1) * n / side)
        };
        lo..hi.max(lo + 1).min(n)
    };
    let mut line = vec![0u8; side * 3];
    for gr in 0..grid {
        for gc in 0..grid {
            let (mut sum, mut count, mut diagonal) = (0.0, 0usize, false);
            for a in span(gr) {
                for b in span(gc) {
                    if a == b {
                        diagonal = true;
                    } else {
                        sum += m[[order[a], order[b]]].max(0.0);
                        count += 1;
                    }
                }
            }
            let colour = if count == 0 && diagonal {
                DIAGONAL
            } else {
                viridis((sum / count.max(1) as f64 / scale).sqrt())
            };
            for p in gc * px_per_cell..(gc + 1) * px_per_cell {
                line[p * 3..p * 3 + 3].copy_from_slice(&colour);
            }
        }
        for y in gr * px_per_cell..(gr + 1) * px_per_cell {
            let o = ((MARGIN + y) * width + MARGIN) * 3;
            canvas.rgb[o..o + side * 3].copy_from_slice(&line);
        }
    }
    if n <= max_side {
        for (a, &class) in order.iter().enumerate() {
            canvas.label(MARGIN + a * cell, MARGIN + a * cell, cell, class);
        }
    }
    let pixel = |class: usize| {
        if n <= max_side {
            class * cell
        } else {
            class * side / n
        }
    };
    let thick = if cell >= 8 { 2 } else { 1 };
    let mut at = 0;
    for &b in blocks {
        let (p0, p1) = (MARGIN + pixel(at), MARGIN + pixel(at + b));
        let inner = p1.saturating_sub(thick).max(p0);
        canvas.rect(p0, p0, p1, p0 + thick, BORDER);
        canvas.rect(p0, inner, p1, p1, BORDER);
        canvas.rect(p0, p0, p0 + thick, p1, BORDER);
        canvas.rect(inner, p0, p1, p1, BORDER);
        at += b;
    }
    let bar_x = MARGIN + side + BAR_GAP;
    for y in 0..side {
        let t = 1.0 - y as f64 / (side.max(2) - 1) as f64;
        canvas.rect(
            bar_x,
            MARGIN + y,
            bar_x + BAR_WIDTH,
            MARGIN + y + 1,
            viridis(t),
        );
    }

    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        encoder.set_filter(png::Filter::Up);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer
            .write_image_data(&canvas.rgb)
            .map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn decode(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info.width as usize, info.height as usize, buf)
    }

    #[test]
    fn draws_cells_diagonal_and_borders() {
        let mut m = Array2::<f64>::zeros((4, 4));
        m[[0, 2]] = 1.0;
        m[[2, 0]] = 1.0;
        m[[1, 3]] = 0.25;
        let png = render(m.view(), &[0, 2, 1, 3], &[2, 2]).unwrap();
        let (w, h, rgb) = decode(&png);
        let cell = 40;
        assert_eq!(
            (w, h),
            (
                MARGIN * 2 + 4 * cell + BAR_GAP + BAR_WIDTH,
                MARGIN * 2 + 4 * cell
            )
        );
        let at = |x: usize, y: usize| {
            let o = (y * w + x) * 3;
            [rgb[o], rgb[o + 1], rgb[o + 2]]
        };
        let centre =
            |r: usize, c: usize| at(MARGIN + c * cell + cell / 2, MARGIN + r * cell + cell / 2);
        let corner = |r: usize, c: usize| at(MARGIN + c * cell + 3, MARGIN + r * cell + cell - 4);
        assert_eq!(corner(0, 0), DIAGONAL);
        // Class 0's id is written in its diagonal cell: scale 4, centred; the digit 0's middle
        // column is open and its left column is ink.
        assert_eq!(centre(0, 0), DIAGONAL);
        assert_eq!(at(MARGIN + 14 + 1, MARGIN + 10 + 1), LABEL);
        // The second row is class 2, whose 3x5 glyph has ink at its top-left.
        assert_eq!(at(MARGIN + cell + 14 + 1, MARGIN + cell + 10 + 1), LABEL);
        assert_eq!(centre(0, 1), viridis(1.0));
        assert_eq!(centre(2, 3), viridis(0.5));
        assert_eq!(centre(0, 3), viridis(0.0));
        assert_eq!(at(MARGIN, MARGIN + 5), BORDER);
        assert_eq!(at(MARGIN + 2 * cell, MARGIN + 2 * cell + 5), BORDER);
    }

    #[test]
    fn many_classes_stay_within_the_cap() {
        let m = Array2::<f64>::from_shape_fn((150, 150), |(i, j)| ((i + j) % 7) as f64);
        let order: Vec<usize> = (0..150).collect();
        let png = render_within(m.view(), &order, &[70, 80], 100).unwrap();
        let (w, h, _) = decode(&png);
        assert_eq!(h, 2 * MARGIN + 75, "two classes per pixel");
        assert_eq!(w, 2 * MARGIN + 75 + BAR_GAP + BAR_WIDTH);
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(0.5), [33, 145, 140]);
    }
}
