//! Choosing the images of an ISMRMRD raw file to read: a value of each counter of [`COUNTERS`],
//! or every value (`all`), as `msm`'s `--contrast`, `--phase`, `--repetition` and `--set` and
//! the trainer's `data.select` give them.
//!
//! Several values of a counter make a series: multi-echo scans (contrast), cardiac phases,
//! dynamics (repetition), flow encodings (set). [`ImageChoice::series`] lists the images a
//! choice names as a complete grid over the counters chosen `all`, the axes an output of the
//! whole series has.

use super::raw::{is_raw, RawScan, Selection, COUNTERS};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One counter's choice: a value, or `all` (every value the file has).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterChoice {
    /// Every value the file has.
    All,
    /// This value only.
    #[serde(untagged)]
    Value(u64),
}

/// What a counter's choice is expected to be, in errors.
const EXPECTED_CHOICE: &str = "a counter value (a number >= 0) or \"all\"";

impl std::str::FromStr for CounterChoice {
    type Err = String;

    /// `all`, or a number >= 0.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(CounterChoice::All),
            _ => s
                .parse()
                .map(CounterChoice::Value)
                .map_err(|_| format!("{s:?} is not {EXPECTED_CHOICE}")),
        }
    }
}

impl std::fmt::Display for CounterChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            CounterChoice::All => f.write_str("all"),
            CounterChoice::Value(v) => write!(f, "{v}"),
        }
    }
}

impl<'de> Deserialize<'de> for CounterChoice {
    /// A number >= 0 or `"all"`; anything else is an error that says so (serde's own untagged
    /// form names no expected value).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Choice;
        impl serde::de::Visitor<'_> for Choice {
            type Value = CounterChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED_CHOICE)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                Ok(CounterChoice::Value(v))
            }
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
                match v {
                    "all" => Ok(CounterChoice::All),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Choice)
    }
}

/// A choice for each counter of [`COUNTERS`], or `None`: the file must hold a single value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageChoice {
    /// The contrast (echo) counter.
    pub contrast: Option<CounterChoice>,
    /// The (cardiac) phase counter.
    pub phase: Option<CounterChoice>,
    /// The repetition counter.
    pub repetition: Option<CounterChoice>,
    /// The set counter.
    pub set: Option<CounterChoice>,
}

/// The images an [`ImageChoice`] names in one file, on the grid of the counters chosen `all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSeries {
    /// The counters chosen `all` (their index in [`COUNTERS`]) and the values each has, in
    /// [`COUNTERS`]' order; empty when no counter is.
    pub axes: Vec<(usize, Vec<u64>)>,
    /// One selection per point of the grid, in row-major order of `axes` (the last axis
    /// fastest); one without axes.
    pub images: Vec<Selection>,
}

impl ImageSeries {
    /// The axes' names and sizes.
    pub fn shape(&self) -> Vec<(&'static str, usize)> {
        self.axes
            .iter()
            .map(|(c, values)| (COUNTERS[*c], values.len()))
            .collect()
    }

    /// Image `i` described by its values on the axes (`repetition 2, contrast 0`), empty
    /// without axes.
    pub fn label(&self, i: usize) -> String {
        let values = self.images[i].values();
        self.axes
            .iter()
            .map(|(c, _)| format!("{} {}", COUNTERS[*c], values[*c].unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl ImageChoice {
    /// The choices in [`COUNTERS`]' order.
    pub fn choices(&self) -> [Option<CounterChoice>; 4] {
        [self.contrast, self.phase, self.repetition, self.set]
    }

    /// Whether a counter is chosen `all`.
    pub fn has_all(&self) -> bool {
        self.choices().contains(&Some(CounterChoice::All))
    }

    /// The selection of the values given (`all` and `None` alike left unset).
    pub fn fixed(&self) -> Selection {
        Selection::from_values(self.choices().map(|c| match c {
            Some(CounterChoice::Value(v)) => Some(v),
            _ => None,
        }))
    }

    /// The images of the scan `path` this choice names: one selection without `all`; with it,
    /// one per image of the file whose counters match the values given (listed by
    /// [`RawScan::images`]), with the counters chosen set and the others left to the reader,
    /// which refuses them if they have several values. A file that is not ISMRMRD raw data
    /// (fastMRI's layout, which has one image) gives one selection.
    pub fn images(&self, path: &Path) -> Result<Vec<Selection>> {
        let choices = self.choices();
        let fixed = self.fixed();
        if !self.has_all() || !is_raw(path) {
            return Ok(vec![fixed]);
        }
        let mut images: Vec<Selection> = Vec::new();
        for image in RawScan::images(path)? {
            let have = image.values();
            if have
                .iter()
                .zip(fixed.values())
                .any(|(h, w)| w.is_some() && *h != w)
            {
                continue;
            }
            let s = Selection::from_values(std::array::from_fn(|i| choices[i].and(have[i])));
            if !images.contains(&s) {
                images.push(s);
            }
        }
        if images.is_empty() {
            return Err(Error::format(
                path,
                format!(
                    "has no image with the counter values chosen ({}); expected values its \
                     imaging lines have (`msm info` lists them)",
                    self.describe()
                ),
            ));
        }
        Ok(images)
    }

    /// [`ImageChoice::images`] as a series: the counters chosen `all` are its axes, and every
    /// combination of their values must be in the file (a series with a hole, such as a
    /// repetition that lacks an echo, is refused, naming the missing image). `all` on a file
    /// that is not ISMRMRD raw data is refused: it has no counters.
    pub fn series(&self, path: &Path) -> Result<ImageSeries> {
        if self.has_all() && !is_raw(path) {
            std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            return Err(Error::format(
                path,
                format!(
                    "is not ISMRMRD raw data, so it has no counters to read all of ({}); \
                     expected `all` only with an ISMRMRD raw file (`/dataset/data`)",
                    self.describe()
                ),
            ));
        }
        let mut images = self.images(path)?;
        images.sort_by_key(|s| s.values());
        let axes: Vec<(usize, Vec<u64>)> = self
            .choices()
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == Some(CounterChoice::All))
            .map(|(i, _)| {
                let mut values: Vec<u64> = images.iter().filter_map(|s| s.values()[i]).collect();
                values.sort_unstable();
                values.dedup();
                (i, values)
            })
            .collect();
        let grid: usize = axes.iter().map(|(_, v)| v.len()).product();
        if images.len() != grid {
            let fixed = self.fixed().values();
            let missing = (0..grid)
                .map(|mut n| {
                    let mut values = fixed;
                    for (c, vals) in axes.iter().rev() {
                        values[*c] = Some(vals[n % vals.len()]);
                        n /= vals.len();
                    }
                    values
                })
                .find(|v| !images.iter().any(|s| s.values() == *v))
                .map(|v| {
                    axes.iter()
                        .map(|(c, _)| format!("{} {}", COUNTERS[*c], v[*c].unwrap_or(0)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            return Err(Error::format(
                path,
                format!(
                    "holds {} of the {grid} images that {} make: no imaging line of {missing}; \
                     expected every combination, or choose one value of a counter",
                    images.len(),
                    axes.iter()
                        .map(|(c, v)| format!("{} values of {}", v.len(), COUNTERS[*c]))
                        .collect::<Vec<_>>()
                        .join(" x ")
                ),
            ));
        }
        Ok(ImageSeries { axes, images })
    }

    /// The choice as `repetition all, contrast 1`, or `one image` when no counter is chosen.
    pub fn describe(&self) -> String {
        let named: Vec<String> = self
            .choices()
            .iter()
            .zip(COUNTERS)
            .filter_map(|(c, name)| c.map(|c| format!("{name} {c}")))
            .collect();
        if named.is_empty() {
            "one image".to_string()
        } else {
            named.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_choices_parse_from_words_and_numbers() {
        assert_eq!("all".parse(), Ok(CounterChoice::All));
        assert_eq!("3".parse(), Ok(CounterChoice::Value(3)));
        for bad in ["-1", "1.5", "every", ""] {
            let e = bad.parse::<CounterChoice>().unwrap_err();
            assert!(e.contains("\"all\"") && e.contains(">= 0"), "{e}");
        }
        assert_eq!(CounterChoice::All.to_string(), "all");
        assert_eq!(CounterChoice::Value(7).to_string(), "7");
        let c = ImageChoice {
            repetition: Some(CounterChoice::All),
            contrast: Some(CounterChoice::Value(1)),
            ..Default::default()
        };
        assert_eq!(c.describe(), "contrast 1, repetition all");
        assert_eq!(c.fixed().values(), [Some(1), None, None, None]);
        assert!(c.has_all());
        assert_eq!(ImageChoice::default().describe(), "one image");
    }
}
