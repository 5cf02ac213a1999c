//! How raw inputs become a network's first bits: already-binarized inputs, or features compared with thresholds.

use crate::error::{Error, Result};
use crate::limits::{check_width, checked_product};

/// Order of the encoder's output bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOrder {
    /// Bit `(f, t)` has index `f * T + t`: all thresholds of a feature are adjacent.
    FeatureMajor,
    /// Bit `(f, t)` has index `t * F + f`: the first threshold of every feature comes first.
    ThresholdMajor,
}

impl BitOrder {
    /// The name used in the file format.
    pub fn name(self) -> &'static str {
        match self {
            BitOrder::FeatureMajor => "feature_major",
            BitOrder::ThresholdMajor => "threshold_major",
        }
    }
}

/// Per-feature thresholds: bit `(f, t)` is `x[f] > thresholds[f][t]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdEncoder {
    num_features: usize,
    per_feature: usize,
    bit_order: BitOrder,
    thresholds: Vec<f32>,
}

impl ThresholdEncoder {
    /// `thresholds` is row-major `[num_features, per_feature]`; no value may be NaN.
    pub fn new(num_features: usize, per_feature: usize, bit_order: BitOrder, thresholds: Vec<f32>) -> Result<Self> {
        if num_features == 0 || per_feature == 0 {
            return Err(Error::Network(format!(
                "encoder: expected at least one feature and one threshold per feature, got {num_features} x {per_feature}"
            )));
        }
        let expected = checked_product(num_features, per_feature, "encoder thresholds")?;
        if thresholds.len() != expected {
            return Err(Error::Network(format!(
                "encoder thresholds: expected {num_features} x {per_feature} = {expected} values, got {}",
                thresholds.len()
            )));
        }
        if let Some(i) = thresholds.iter().position(|t| t.is_nan()) {
            return Err(Error::Network(format!(
                "encoder thresholds: value [{}, {}] is NaN",
                i / per_feature,
                i % per_feature
            )));
        }
        check_width(expected, "encoder output")?;
        Ok(Self { num_features, per_feature, bit_order, thresholds })
    }

    /// Number of input features `F`.
    pub fn num_features(&self) -> usize {
        self.num_features
    }
    /// Thresholds per feature `T`.
    pub fn per_feature(&self) -> usize {
        self.per_feature
    }
    /// Order of the output bits.
    pub fn bit_order(&self) -> BitOrder {
        self.bit_order
    }
    /// Row-major `[F, T]` thresholds.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }
    /// Index of bit `(f, t)` in the encoder's output.
    #[inline]
    pub fn bit_index(&self, feature: usize, threshold: usize) -> usize {
        match self.bit_order {
            BitOrder::FeatureMajor => feature * self.per_feature + threshold,
            BitOrder::ThresholdMajor => threshold * self.num_features + feature,
        }
    }
}

/// How raw inputs become the network's first bits.
#[derive(Clone, Debug, PartialEq)]
pub enum Encoder {
    /// The inputs are already bits.
    Bits {
        /// Number of input bits.
        num_inputs: usize,
    },
    /// Features compared against thresholds.
    Thresholds(ThresholdEncoder),
}

impl Encoder {
    /// Input bits for `num_inputs` already-binarized inputs.
    pub fn bits(num_inputs: usize) -> Result<Self> {
        if num_inputs == 0 {
            return Err(Error::Network("encoder: expected at least one input bit".into()));
        }
        check_width(num_inputs, "encoder output")?;
        Ok(Encoder::Bits { num_inputs })
    }

    /// Number of values per sample a feature array must have (features, or bits for [`Encoder::Bits`]).
    pub fn num_inputs(&self) -> usize {
        match self {
            Encoder::Bits { num_inputs } => *num_inputs,
            Encoder::Thresholds(t) => t.num_features(),
        }
    }

    /// Width of the encoder's output, the network's first bits.
    pub fn num_bits(&self) -> usize {
        match self {
            Encoder::Bits { num_inputs } => *num_inputs,
            Encoder::Thresholds(t) => t.thresholds().len(),
        }
    }
}
