//! The shape of an image row: `C,H,W`, channel-major (all of channel 0's pixels row by row, then
//! channel 1's, …), the layout of an NCHW tensor's row.

use distill_core::{CoreError, Result};

/// `channels × height × width` of each row of a data set whose rows are images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    pub fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageShape {
            channels,
            height,
            width,
        }
    }

    /// A one-channel (grey) image of `height × width`.
    pub fn gray(height: usize, width: usize) -> Self {
        ImageShape::new(1, height, width)
    }

    /// Pixels in one channel: `height × width`.
    pub fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Values in one row: `channels × height × width`.
    pub fn values(&self) -> usize {
        self.channels * self.plane()
    }

    /// The NCHW dimensions of `n` such rows.
    pub fn nchw(&self, n: usize) -> [usize; 4] {
        [n, self.channels, self.height, self.width]
    }

    /// Parses `C,H,W` or `H,W` (one channel); `x` may separate the numbers too (`28x28`). Every
    /// number must be positive.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let parts: Vec<usize> = s
            .split([',', 'x'])
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| format!("'{s}' is not C,H,W or H,W (positive whole numbers)"))?;
        let shape = match parts.as_slice() {
            [h, w] => ImageShape::gray(*h, *w),
            [c, h, w] => ImageShape::new(*c, *h, *w),
            _ => {
                return Err(format!(
                    "'{s}' has {} numbers; write C,H,W (e.g. 3,32,32) or H,W (e.g. 28,28)",
                    parts.len()
                ));
            }
        };
        if shape.channels == 0 || shape.plane() == 0 {
            return Err(format!(
                "'{s}' has a zero dimension; every dimension must be positive"
            ));
        }
        Ok(shape)
    }

    /// The shape as metadata records it: `H,W` for one channel (as files have always had it),
    /// `C,H,W` otherwise.
    pub fn metadata(&self) -> String {
        if self.channels == 1 {
            format!("{},{}", self.height, self.width)
        } else {
            self.to_string()
        }
    }

    /// Refuses rows of `width` values that are not this shape's `C×H×W`.
    pub fn check_width(&self, width: usize) -> Result<()> {
        if self.values() == width {
            Ok(())
        } else {
            Err(CoreError::invalid(format!(
                "image shape {self} holds {} values per row, but the rows have {width}",
                self.values()
            )))
        }
    }
}

impl std::fmt::Display for ImageShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{}", self.channels, self.height, self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings_and_writes_one_channel_as_before() {
        let s = ImageShape::parse("1,28,56").unwrap();
        assert_eq!(s, ImageShape::gray(28, 56));
        assert_eq!(s.metadata(), "28,56");
        assert_eq!(
            ImageShape::parse("28x28").unwrap(),
            ImageShape::gray(28, 28)
        );
        let c = ImageShape::parse("3, 32, 32").unwrap();
        assert_eq!((c.values(), c.metadata()), (3072, "3,32,32".to_string()));
        assert_eq!(c.nchw(5), [5, 3, 32, 32]);
        assert!(ImageShape::parse("3,0,4").unwrap_err().contains("zero"));
        assert!(
            ImageShape::parse("1,2,3,4")
                .unwrap_err()
                .contains("4 numbers")
        );
        assert!(ImageShape::parse("a,b").unwrap_err().contains("C,H,W"));
        assert!(c.check_width(3071).is_err() && c.check_width(3072).is_ok());
    }
}
