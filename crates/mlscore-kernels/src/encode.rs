//! Categorical encodings: where a value sits among a model's categories, one-hot rows, label
//! maps and thresholds.
//!
//! A front end builds a [`Categories`] once, when it reads the model, and looks every row's
//! value up in it by hashing; the one-hot and ordinal encoders of scikit-learn and of ONNX-ML
//! (`OneHotEncoder`, `LabelEncoder`) differ only in what they do with the positions found.
//!
//! ```
//! use mlscore_kernels::encode::{Categories, LabelMap, one_hot_rows};
//! let colours = Categories::from_strings(["red", "green", "blue"]);
//! let slots: Vec<Option<usize>> = ["blue", "mauve", "red"].iter().map(|s| colours.find_str(s)).collect();
//! assert_eq!(slots, [Some(2), None, Some(0)]);
//! // Row-major one-hot vectors: an unknown value is a row of zeros.
//! assert_eq!(one_hot_rows::<f32>(&slots, colours.len()), [0., 0., 1., 0., 0., 0., 1., 0., 0.]);
//! // A label map: values by position, a default for unknown keys.
//! let map = LabelMap::new(colours, vec![10_i64, 20, 30], -1)?;
//! assert_eq!(map.map(&slots), [30, -1, 10]);
//! # Ok::<(), mlscore_kernels::Error>(())
//! ```

use std::collections::HashMap;

use crate::{Error, Result};

/// A model's list of categories with a hash index of their positions.
///
/// Strings are matched exactly, integers by value, floats by value with NaN matching NaN and
/// `-0.0` matching `0.0`. A category listed twice is found at its last position, as onnxruntime's
/// encoders build their maps (scikit-learn's categories are unique). A string list may hold one
/// missing-value category (pandas' `None`/NaN among object categories), found by
/// [`Categories::missing`].
#[derive(Debug, Clone, PartialEq)]
pub struct Categories {
    index: Index,
    len: usize,
    missing: Option<usize>,
}

/// A position by its key, hashed by a fast hasher: a row's category lookup is a hash of a few
/// bytes (categorical HistGradientBoosting, 65,536-row batches: SipHash was 17% of the time).
pub(crate) type Positions<K> = HashMap<K, usize, foldhash::fast::RandomState>;

#[derive(Debug, Clone, PartialEq)]
enum Index {
    Strings(Positions<String>),
    Ints(Positions<i64>),
    Floats(Positions<u64>),
}

/// The hash key of a float: one NaN, one zero.
fn float_key(x: f64) -> u64 {
    if x.is_nan() {
        f64::NAN.to_bits()
    } else if x == 0.0 {
        0
    } else {
        x.to_bits()
    }
}

impl Categories {
    /// String categories.
    pub fn from_strings<S: Into<String>>(keys: impl IntoIterator<Item = S>) -> Self {
        Self::from_optional_strings(keys.into_iter().map(|k| Some(k.into())))
    }

    /// String categories where `None` is the missing-value category.
    pub fn from_optional_strings(keys: impl IntoIterator<Item = Option<String>>) -> Self {
        let (mut index, mut len, mut missing) = (Positions::default(), 0, None);
        for (i, k) in keys.into_iter().enumerate() {
            match k {
                Some(k) => {
                    index.insert(k, i);
                }
                None => missing = Some(i),
            }
            len = i + 1;
        }
        Self { index: Index::Strings(index), len, missing }
    }

    /// Integer categories.
    pub fn from_ints(keys: impl IntoIterator<Item = i64>) -> Self {
        let mut len = 0;
        let index = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                len = i + 1;
                (k, i)
            })
            .collect();
        Self { index: Index::Ints(index), len, missing: None }
    }

    /// Float categories (NaN among them is the missing-value category).
    pub fn from_floats(keys: impl IntoIterator<Item = f64>) -> Self {
        let (mut len, mut missing) = (0, None);
        let index = keys
            .into_iter()
            .enumerate()
            .map(|(i, k)| {
                len = i + 1;
                if k.is_nan() {
                    missing = Some(i);
                }
                (float_key(k), i)
            })
            .collect();
        Self { index: Index::Floats(index), len, missing }
    }

    /// How many categories the list holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the categories are strings.
    pub fn are_strings(&self) -> bool {
        matches!(self.index, Index::Strings(_))
    }

    /// Whether the categories are floats.
    pub fn are_floats(&self) -> bool {
        matches!(self.index, Index::Floats(_))
    }

    /// The position of a string (`None` for an unknown one, or when the categories are numbers).
    #[inline]
    pub fn find_str(&self, value: &str) -> Option<usize> {
        match &self.index {
            Index::Strings(m) => m.get(value).copied(),
            _ => None,
        }
    }

    /// The position of an integer (float categories compare by value; `None` for strings).
    #[inline]
    pub fn find_int(&self, value: i64) -> Option<usize> {
        match &self.index {
            Index::Ints(m) => m.get(&value).copied(),
            Index::Floats(m) => m.get(&float_key(value as f64)).copied(),
            Index::Strings(_) => None,
        }
    }

    /// The position of a float. Integer categories match integral values only; NaN finds the
    /// missing-value category.
    #[inline]
    pub fn find_float(&self, value: f64) -> Option<usize> {
        match &self.index {
            Index::Floats(m) => m.get(&float_key(value)).copied(),
            Index::Ints(m) => {
                // Only exact integers in i64's range can equal an integer category.
                let in_range =
                    value.fract() == 0.0 && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&value);
                if in_range { m.get(&(value as i64)).copied() } else { None }
            }
            Index::Strings(_) => value.is_nan().then_some(self.missing).flatten(),
        }
    }

    /// The position of the missing-value category, if the list has one.
    pub fn missing(&self) -> Option<usize> {
        self.missing
    }
}

/// Row-major one-hot vectors of `width` columns: row `r` holds a one at `slots[r]` and zeros
/// elsewhere (a row of zeros for `None` or a slot past the width).
pub fn one_hot_rows<T: Copy + From<u8>>(slots: &[Option<usize>], width: usize) -> Vec<T> {
    let mut out = vec![T::from(0); slots.len() * width];
    for (row, slot) in out.chunks_exact_mut(width.max(1)).zip(slots) {
        if let Some(cell) = slot.and_then(|s| row.get_mut(s)) {
            *cell = T::from(1);
        }
    }
    out
}

/// Keys mapped to values by position, with a default for keys not in the map (ONNX-ML's
/// `LabelEncoder`).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMap<V> {
    keys: Categories,
    values: Vec<V>,
    default: V,
}

impl<V: Clone> LabelMap<V> {
    /// A map from each key to the value at its position; keys and values must be as many.
    pub fn new(keys: Categories, values: Vec<V>, default: V) -> Result<Self> {
        if keys.len() != values.len() {
            return Err(Error::InvalidModel(format!("{} keys but {} values", keys.len(), values.len())));
        }
        Ok(Self { keys, values, default })
    }

    /// The keys.
    pub fn keys(&self) -> &Categories {
        &self.keys
    }

    /// The value of every key position found (the default for `None`).
    pub fn map(&self, slots: &[Option<usize>]) -> Vec<V> {
        slots.iter().map(|s| s.and_then(|s| self.values.get(s)).unwrap_or(&self.default).clone()).collect()
    }
}

/// Every value above the threshold becomes 1 and every other 0, in place (NaN becomes 0;
/// a front end that must refuse NaN checks before).
pub fn binarize<T: Copy + PartialOrd + From<u8>>(x: &mut [T], threshold: T) {
    for v in x {
        *v = T::from(u8::from(*v > threshold));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_nan_and_signed_zero_and_the_last_duplicate() {
        let c = Categories::from_floats([1.5, f64::NAN, -0.0, 1.5]);
        assert_eq!(c.len(), 4);
        assert_eq!(c.find_float(1.5), Some(3));
        assert_eq!(c.find_float(f64::NAN), Some(1));
        assert_eq!(c.find_float(0.0), Some(2));
        assert_eq!(c.find_float(2.0), None);
        assert_eq!(c.missing(), Some(1));
        assert_eq!(c.find_int(0), Some(2));
        assert_eq!(c.find_str("1.5"), None);
    }

    #[test]
    fn ints_take_only_exact_integral_floats() {
        let c = Categories::from_ints([3, -7, i64::MAX]);
        assert_eq!(c.find_int(-7), Some(1));
        assert_eq!(c.find_float(3.0), Some(0));
        assert_eq!(c.find_float(3.5), None);
        assert_eq!(c.find_float(f64::NAN), None);
        assert_eq!(c.find_float(f64::INFINITY), None);
        assert_eq!(c.find_float(1e300), None);
        assert_eq!(c.missing(), None);
    }

    #[test]
    fn strings_with_a_missing_category() {
        let c = Categories::from_optional_strings([Some("a".to_string()), None, Some("b".to_string())]);
        assert_eq!((c.find_str("b"), c.find_str("z"), c.missing()), (Some(2), None, Some(1)));
        assert_eq!(c.find_float(f64::NAN), Some(1));
        assert_eq!(c.find_float(1.0), None);
        assert!(c.are_strings());
    }

    #[test]
    fn one_hot_ignores_unknown_and_out_of_range_slots() {
        let rows: Vec<f64> = one_hot_rows(&[Some(1), None, Some(5)], 2);
        assert_eq!(rows, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert!(one_hot_rows::<f32>(&[Some(0)], 0).is_empty());
    }

    #[test]
    fn label_maps_check_their_lengths() {
        let keys = Categories::from_ints([1, 2]);
        assert!(LabelMap::new(keys.clone(), vec!["x"], "d").is_err());
        let m = LabelMap::new(keys, vec!["x", "y"], "d").expect("map");
        let slots: Vec<_> = [2, 9].iter().map(|k| m.keys().find_int(*k)).collect();
        assert_eq!(m.map(&slots), ["y", "d"]);
    }

    #[test]
    fn binarize_is_strictly_above() {
        let mut x = [0.5f32, 1.0, 1.5, f32::NAN];
        binarize(&mut x, 1.0);
        assert_eq!(x, [0.0, 0.0, 1.0, 0.0]);
    }
}
