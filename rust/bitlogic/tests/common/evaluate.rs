//! The plain evaluator: one sample at a time, written from docs/FORMAT.md alone.

use bitlogic::BitOrder;

use super::{Batch, RefEncoder, RefNet};

/// One input value of a sample, as the caller handed it over.
#[derive(Clone, Copy, Debug)]
pub enum Scalar {
    Bit(u8),
    U8(u8),
    F32(f32),
    F64(f64),
}

/// `x > threshold` under the comparison rule of FORMAT.md 3.2; `None` for NaN.
fn greater(x: Scalar, threshold: f32) -> Option<bool> {
    match x {
        Scalar::F32(v) => (!v.is_nan()).then_some(v > threshold),
        Scalar::F64(v) => (!v.is_nan()).then_some(v > f64::from(threshold)),
        Scalar::U8(v) | Scalar::Bit(v) => Some(f32::from(v) > threshold),
    }
}

impl RefNet {
    /// Group 0 of one sample, or why the sample is not a valid input.
    pub fn encode(&self, sample: &[Scalar]) -> Result<Vec<bool>, String> {
        let as_bit = |v: &Scalar| match *v {
            Scalar::Bit(b) | Scalar::U8(b) if b <= 1 => Ok(b == 1),
            other => Err(format!("{other:?} is not a bit")),
        };
        let bits_given = matches!(sample.first(), Some(Scalar::Bit(_)));
        match &self.encoder {
            _ if bits_given => sample.iter().map(as_bit).collect(),
            RefEncoder::Bits(_) => match sample.first() {
                Some(Scalar::F32(_) | Scalar::F64(_)) => Err("float features for a bits encoder".into()),
                _ => sample.iter().map(as_bit).collect(),
            },
            RefEncoder::Thresholds { order, thresholds } => {
                let features = thresholds.len();
                let per = thresholds[0].len();
                let mut bits = vec![false; features * per];
                for (f, row) in thresholds.iter().enumerate() {
                    for (t, &threshold) in row.iter().enumerate() {
                        let index = match order {
                            BitOrder::FeatureMajor => f * per + t,
                            BitOrder::ThresholdMajor => t * features + f,
                        };
                        bits[index] = greater(sample[f], threshold).ok_or_else(|| format!("feature {f} is NaN"))?;
                    }
                }
                Ok(bits)
            }
        }
    }

    /// The number of values a sample must have.
    pub fn expected_cols(&self, bits_given: bool) -> usize {
        if bits_given {
            self.encoder.width()
        } else {
            self.encoder.num_inputs()
        }
    }

    /// Runs every layer on group 0 and returns the last group.
    pub fn forward(&self, group0: Vec<bool>) -> Vec<bool> {
        let mut x = group0;
        for layer in &self.layers {
            x = layer.model().forward(&x);
        }
        x
    }

    /// GroupSum of the last group.
    pub fn group_sum(&self, last: &[bool]) -> Vec<i32> {
        let g = last.len() / self.num_classes;
        (0..self.num_classes).map(|c| last[c * g..(c + 1) * g].iter().filter(|&&b| b).count() as i32).collect()
    }

    /// Class scores of one sample.
    pub fn sample_scores(&self, sample: &[Scalar]) -> Result<Vec<i32>, String> {
        Ok(self.group_sum(&self.forward(self.encode(sample)?)))
    }

    /// Scores of a batch, sample-major, or why the batch is not a valid input.
    pub fn scores(&self, batch: &Batch) -> Result<Vec<i32>, String> {
        let expected = self.expected_cols(batch.is_bits());
        if batch.cols != expected {
            return Err(format!("{} columns, expected {expected}", batch.cols));
        }
        let mut out = Vec::with_capacity(batch.rows * self.num_classes);
        for r in 0..batch.rows {
            out.extend(self.sample_scores(&batch.row(r))?);
        }
        Ok(out)
    }
}

/// Index of the largest score, the lowest index on ties.
pub fn argmax(scores: &[i32]) -> usize {
    let best = *scores.iter().max().expect("at least one class");
    scores.iter().position(|&s| s == best).expect("the maximum is present")
}

/// Predictions from sample-major scores.
pub fn predictions(scores: &[i32], num_classes: usize) -> Vec<i64> {
    scores.chunks(num_classes).map(|row| argmax(row) as i64).collect()
}
