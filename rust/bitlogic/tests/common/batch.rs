//! Owned input batches, viewed as engine inputs in C order, F order or with padded strides.

use bitlogic::{Input, Matrix};

use super::Scalar;

/// Values of a batch, C-ordered.
#[derive(Clone, Debug)]
pub enum Values {
    Bits(Vec<u8>),
    U8(Vec<u8>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// An owned batch of `rows` samples of `cols` values.
#[derive(Clone, Debug)]
pub struct Batch {
    pub rows: usize,
    pub cols: usize,
    pub values: Values,
}

/// A memory layout for a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major, contiguous.
    C,
    /// Column-major: row stride 1, column stride `rows`.
    F,
    /// Row-major with gaps: column stride 2, row stride `2 * cols + 3`.
    Padded,
}

/// A batch's values re-laid out, with the strides to view them.
pub struct Laid<T> {
    data: Vec<T>,
    row_stride: usize,
    col_stride: usize,
}

fn lay_out<T: Copy>(values: &[T], rows: usize, cols: usize, layout: Layout, fill: T) -> Laid<T> {
    match layout {
        Layout::C => Laid { data: values.to_vec(), row_stride: cols, col_stride: 1 },
        Layout::F => {
            let mut data = vec![fill; rows * cols];
            for r in 0..rows {
                for c in 0..cols {
                    data[c * rows + r] = values[r * cols + c];
                }
            }
            Laid { data, row_stride: 1, col_stride: rows }
        }
        Layout::Padded => {
            let row_stride = 2 * cols + 3;
            let mut data = vec![fill; rows * row_stride];
            for r in 0..rows {
                for c in 0..cols {
                    data[r * row_stride + 2 * c] = values[r * cols + c];
                }
            }
            Laid { data, row_stride, col_stride: 2 }
        }
    }
}

/// Owned storage of a batch in some layout; [`LaidBatch::input`] borrows it as an engine input.
pub enum LaidBatch {
    Bits(Laid<u8>, usize, usize),
    U8(Laid<u8>, usize, usize),
    F32(Laid<f32>, usize, usize),
    F64(Laid<f64>, usize, usize),
}

fn view<T: Copy>(laid: &Laid<T>, rows: usize, cols: usize) -> Matrix<'_, T> {
    Matrix::new(&laid.data, rows, cols, laid.row_stride, laid.col_stride).expect("the view fits its data")
}

impl LaidBatch {
    pub fn input(&self) -> Input<'_> {
        match self {
            LaidBatch::Bits(l, r, c) => Input::Bits(view(l, *r, *c)),
            LaidBatch::U8(l, r, c) => Input::U8(view(l, *r, *c)),
            LaidBatch::F32(l, r, c) => Input::F32(view(l, *r, *c)),
            LaidBatch::F64(l, r, c) => Input::F64(view(l, *r, *c)),
        }
    }
}

impl Batch {
    pub fn is_bits(&self) -> bool {
        matches!(self.values, Values::Bits(_))
    }

    /// Sample `r`.
    pub fn row(&self, r: usize) -> Vec<Scalar> {
        let range = r * self.cols..(r + 1) * self.cols;
        match &self.values {
            Values::Bits(v) => v[range].iter().map(|&x| Scalar::Bit(x)).collect(),
            Values::U8(v) => v[range].iter().map(|&x| Scalar::U8(x)).collect(),
            Values::F32(v) => v[range].iter().map(|&x| Scalar::F32(x)).collect(),
            Values::F64(v) => v[range].iter().map(|&x| Scalar::F64(x)).collect(),
        }
    }

    /// A C-ordered view of the first `rows` samples.
    pub fn prefix(&self, rows: usize) -> Input<'_> {
        let n = rows * self.cols;
        match &self.values {
            Values::Bits(v) => Input::Bits(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
            Values::U8(v) => Input::U8(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
            Values::F32(v) => Input::F32(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
            Values::F64(v) => Input::F64(Matrix::c_order(&v[..n], rows, self.cols).unwrap()),
        }
    }

    /// The whole batch, C-ordered.
    pub fn input(&self) -> Input<'_> {
        self.prefix(self.rows)
    }

    /// The batch copied into `layout`.
    pub fn laid_out(&self, layout: Layout) -> LaidBatch {
        let (r, c) = (self.rows, self.cols);
        match &self.values {
            Values::Bits(v) => LaidBatch::Bits(lay_out(v, r, c, layout, 7), r, c),
            Values::U8(v) => LaidBatch::U8(lay_out(v, r, c, layout, 7), r, c),
            Values::F32(v) => LaidBatch::F32(lay_out(v, r, c, layout, f32::NAN), r, c),
            Values::F64(v) => LaidBatch::F64(lay_out(v, r, c, layout, f64::NAN), r, c),
        }
    }
}
