//! `bitlogic._native`: the Python face of the `bitlogic` crate.
//!
//! This crate only converts types, releases the GIL around evaluation and file I/O, and maps errors to Python
//! exceptions; every rule about networks and inputs lives in the core crate.

mod arrays;
mod train;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use bitlogic::{
    BinaryLayer, BitOrder, ConvBinaryLayer, ConvGateLayer, ConvLutLayer, Encoder, Error, EvalOptions, GateLayer,
    Geometry, Input, Isa, Layer, LayerKind, LutLayer, Matrix, Network, OrPoolLayer, Packed, ProgramStats,
    ThresholdEncoder,
};
use numpy::ndarray::{Array2, Array3, ArrayView2, Dimension, Ix1, Ix2, Ix3};
use numpy::{
    dtype, Element, IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray,
    PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

// The core raises these three; the rest of the hierarchy (python/bitlogic/errors.py) is built on them in Python.
create_exception!(bitlogic, BitlogicError, PyValueError, "Base class of the errors bitlogic raises.");
create_exception!(bitlogic, FormatError, BitlogicError, "A network file is malformed or of an unsupported version.");
create_exception!(bitlogic, InputError, BitlogicError, "An array does not fit what the network expects.");

/// The kernel sources of `cuda/`, built into the extension so that the wheel carries them without data files (the
/// GPU loader compiles them with NVRTC at first use): (file name, text).
const CUDA_SOURCES: &[(&str, &str)] = &[
    ("bitlogic.cuh", include_str!("../../../cuda/bitlogic.cuh")),
    ("logic_layer.cu", include_str!("../../../cuda/logic_layer.cu")),
    ("lut_layer.cu", include_str!("../../../cuda/lut_layer.cu")),
    ("binary_linear.cu", include_str!("../../../cuda/binary_linear.cu")),
    ("candidates.cu", include_str!("../../../cuda/candidates.cu")),
    ("tree_conv.cu", include_str!("../../../cuda/tree_conv.cu")),
    ("packed_inference.cu", include_str!("../../../cuda/packed_inference.cu")),
];

fn to_py(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Format(_) | Error::Version { .. } => FormatError::new_err(message),
        Error::Input(_) | Error::Network(_) => InputError::new_err(message),
        Error::Setting(_) => BitlogicError::new_err(message),
        Error::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(message),
            _ => PyOSError::new_err(message),
        },
    }
}

/// A compiled network: immutable, shared freely between Python threads.
#[pyclass(name = "Network", module = "bitlogic._native", frozen)]
struct PyNetwork {
    inner: Arc<Network>,
}

impl PyNetwork {
    fn wrap(network: Network) -> Self {
        Self { inner: Arc::new(network) }
    }
}

/// A numpy array viewed as a strided `Matrix`, copied first only when its strides are negative.
enum View<'py, T: Element> {
    Borrowed(PyReadonlyArray2<'py, T>),
    Copied(Array2<T>),
}

impl<'py, T: Element + Copy> View<'py, T> {
    fn new(array: &Bound<'py, PyAny>) -> PyResult<Self> {
        let array: PyReadonlyArray2<'py, T> = array.extract()?;
        let view = array.as_array();
        if view.strides().iter().all(|&s| s >= 0) {
            Ok(View::Borrowed(array))
        } else {
            Ok(View::Copied(view.as_standard_layout().into_owned()))
        }
    }

    fn matrix(&self) -> Result<Matrix<'_, T>, Error> {
        let view: ArrayView2<'_, T> = match self {
            View::Borrowed(array) => array.as_array(),
            View::Copied(array) => array.view(),
        };
        let (rows, cols) = view.dim();
        let strides = view.strides();
        let (row_stride, col_stride) = (strides[0] as usize, strides[1] as usize);
        let len = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * row_stride + (cols - 1) * col_stride + 1 };
        // SAFETY: the strides are non-negative, so elements (0,0) ..= (rows-1, cols-1) lie in this span of the
        // array's buffer, which the readonly borrow (or the owned copy) keeps alive and unaliased by Rust writers.
        let data = unsafe { std::slice::from_raw_parts(view.as_ptr(), len) };
        Matrix::new(data, rows, cols, row_stride, col_stride)
    }
}

/// Bool arrays are read as their bytes (numpy stores a bool in one byte), never as Rust `bool`, so a byte other than
/// 0 or 1 is reported instead of being undefined behaviour.
enum Features<'py> {
    F32(View<'py, f32>),
    F64(View<'py, f64>),
    U8(View<'py, u8>),
    Bool(View<'py, u8>),
    /// Bit planes `[num_bits, ceil(num_samples / 64)]` and the number of samples.
    Packed(View<'py, u64>, usize),
}

impl<'py> Features<'py> {
    fn new(x: &Bound<'py, PyAny>, num_samples: Option<usize>) -> PyResult<Self> {
        let py = x.py();
        let Ok(array) = x.downcast::<PyUntypedArray>() else {
            return Err(InputError::new_err(format!(
                "expected a numpy array, got {}",
                x.get_type().name().map_or_else(|_| "an object".to_string(), |n| n.to_string())
            )));
        };
        if array.ndim() != 2 {
            return Err(InputError::new_err(format!(
                "expected a 2-dimensional array of shape [samples, inputs], got shape {:?}",
                array.shape()
            )));
        }
        let d = array.dtype();
        if d.is_equiv_to(&dtype::<u64>(py)) {
            let words = array.shape()[1];
            let n = num_samples.unwrap_or(64 * words);
            if n.div_ceil(64) != words {
                return Err(InputError::new_err(format!(
                    "packed bit planes of {n} samples need {} words per plane, got {words}",
                    n.div_ceil(64)
                )));
            }
            return Ok(Features::Packed(View::new(x)?, n));
        }
        if num_samples.is_some() {
            return Err(InputError::new_err("num_samples is only for packed bit planes (a uint64 array)"));
        }
        if d.is_equiv_to(&dtype::<f32>(py)) {
            Ok(Features::F32(View::new(x)?))
        } else if d.is_equiv_to(&dtype::<f64>(py)) {
            Ok(Features::F64(View::new(x)?))
        } else if d.is_equiv_to(&dtype::<u8>(py)) {
            Ok(Features::U8(View::new(x)?))
        } else if d.is_equiv_to(&dtype::<bool>(py)) {
            Ok(Features::Bool(View::new(&x.call_method1("view", (dtype::<u8>(py),))?)?))
        } else {
            Err(InputError::new_err(format!(
                "expected a float32, float64, uint8 or bool array (or uint64 bit planes), got dtype {}",
                d.str().map_or_else(|_| "?".to_string(), |s| s.to_string())
            )))
        }
    }

    fn input(&self) -> Result<Input<'_>, Error> {
        Ok(match self {
            Features::F32(v) => Input::F32(v.matrix()?),
            Features::F64(v) => Input::F64(v.matrix()?),
            Features::U8(v) => Input::U8(v.matrix()?),
            Features::Bool(v) => Input::Bits(v.matrix()?),
            Features::Packed(v, n) => {
                let m = v.matrix()?;
                let data =
                    m.contiguous().ok_or_else(|| Error::Input("packed bit planes must be C-contiguous".into()))?;
                Input::Packed(Packed::new(data, m.rows(), *n)?)
            }
        })
    }
}

fn options(threads: Option<usize>, isa: Option<&str>, optimize: bool) -> PyResult<EvalOptions> {
    let isa = isa.map(Isa::from_name).transpose().map_err(to_py)?;
    Ok(EvalOptions { threads, isa, optimize })
}

#[pymethods]
impl PyNetwork {
    /// Reads a network file.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        py.allow_threads(|| Network::load(&path)).map(Self::wrap).map_err(to_py)
    }

    /// Parses the bytes of a network file.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        py.allow_threads(|| Network::from_bytes(data)).map(Self::wrap).map_err(to_py)
    }

    /// The bytes of the network file.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.allow_threads(|| self.inner.to_bytes()).map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Writes the network file atomically.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.allow_threads(|| self.inner.save(&path)).map_err(to_py)
    }

    /// Builds a network from its parts; see `bitlogic.Network.from_arrays`.
    #[staticmethod]
    #[pyo3(signature = (num_input_bits, thresholds, bit_order, layers, num_classes, tau, info=None))]
    fn from_parts(
        num_input_bits: Option<usize>,
        thresholds: Option<PyReadonlyArray2<'_, f32>>,
        bit_order: &str,
        layers: &Bound<'_, PyList>,
        num_classes: usize,
        tau: f64,
        info: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let encoder = match (num_input_bits, thresholds) {
            (Some(n), None) => Encoder::bits(n),
            (None, Some(t)) => {
                let order = match bit_order {
                    "feature_major" => BitOrder::FeatureMajor,
                    "threshold_major" => BitOrder::ThresholdMajor,
                    other => {
                        return Err(InputError::new_err(format!(
                            "bit_order: expected 'feature_major' or 'threshold_major', got {other:?}"
                        )))
                    }
                };
                let t = t.as_array();
                let (f, k) = t.dim();
                ThresholdEncoder::new(f, k, order, t.iter().copied().collect()).map(Encoder::Thresholds)
            }
            _ => return Err(InputError::new_err("give exactly one of num_input_bits and thresholds")),
        }
        .map_err(to_py)?;
        let mut parts = Vec::with_capacity(layers.len());
        let mut width = encoder.num_bits();
        for (i, item) in layers.iter().enumerate() {
            let (kind, first, second, geometry) =
                layer_part(&item).map_err(|m| InputError::new_err(format!("invalid network: layer {i}: {m}")))?;
            let layer = layer_from_arrays(&kind, &first, &second, geometry.as_ref(), width)
                .map_err(|m| InputError::new_err(format!("invalid network: layer {i} ({kind}): {m}")))?;
            width = layer.width();
            parts.push(layer);
        }
        let network = Network::new(encoder, parts, num_classes, tau).map_err(to_py)?;
        Ok(Self::wrap(network.with_info(info.unwrap_or_default())))
    }

    /// The encoder as `("bits", num_inputs)` or `("thresholds", thresholds [F, T] float32, bit_order)`.
    fn encoder_parts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        match self.inner.encoder() {
            Encoder::Bits { num_inputs } => ("bits", *num_inputs).into_pyobject(py),
            Encoder::Thresholds(t) => {
                let array = Array2::from_shape_vec((t.num_features(), t.per_feature()), t.thresholds().to_vec())
                    .expect("thresholds hold F x T values");
                ("thresholds", array.into_pyarray(py), t.bit_order().name()).into_pyobject(py)
            }
        }
    }

    /// The layers as `(kind, array, array)` tuples with unpacked tables and weights; the spatial kinds as
    /// `(kind, array, array, geometry)` (or_pool: `(kind, None, None, geometry)`).
    fn layer_parts<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let mut out = Vec::with_capacity(self.inner.layers().len());
        for layer in self.inner.layers() {
            let tuple = match layer {
                Layer::Gates(l) => {
                    let wires: Vec<u32> = l.inputs().iter().flatten().copied().collect();
                    let wires = Array2::from_shape_vec((l.width(), 2), wires).expect("two wires per gate");
                    ("gates", wires.into_pyarray(py), l.ops().to_vec().into_pyarray(py)).into_pyobject(py)?
                }
                Layer::Luts(l) => {
                    let wires = Array2::from_shape_vec((l.width(), l.arity()), l.inputs().to_vec())
                        .expect("arity wires per table");
                    let tables = Array2::from_shape_vec((l.width(), 1 << l.arity()), l.unpacked_tables())
                        .expect("2^arity entries per table");
                    ("luts", wires.into_pyarray(py), tables.into_pyarray(py)).into_pyobject(py)?
                }
                Layer::Binary(l) => {
                    let weights = Array2::from_shape_vec((l.width(), l.num_inputs()), l.unpacked_weights())
                        .expect("one weight per input per output");
                    ("binary", weights.into_pyarray(py), l.thresholds().to_vec().into_pyarray(py)).into_pyobject(py)?
                }
                Layer::ConvGates(l) => {
                    let leaves = leaves_array(l.out_channels(), l.leaves());
                    let ops = Array2::from_shape_vec((l.out_channels(), (1 << l.depth()) - 1), l.ops().to_vec())
                        .expect("2^depth - 1 gates per tree");
                    let geometry = geometry_dict(py, l.geometry(), true)?;
                    ("conv_gates", leaves.into_pyarray(py), ops.into_pyarray(py), geometry).into_pyobject(py)?
                }
                Layer::ConvLuts(l) => {
                    let leaves = leaves_array(l.out_channels(), l.leaves());
                    let tables = Array2::from_shape_vec((l.out_channels(), 1 << l.arity()), l.unpacked_tables())
                        .expect("2^arity entries per table");
                    let geometry = geometry_dict(py, l.geometry(), true)?;
                    ("conv_luts", leaves.into_pyarray(py), tables.into_pyarray(py), geometry).into_pyobject(py)?
                }
                Layer::ConvBinary(l) => {
                    let [c, _, _] = l.geometry().input_shape();
                    let [kh, kw] = l.geometry().kernel_size();
                    let weights = Array2::from_shape_vec((l.out_channels(), c * kh * kw), l.unpacked_weights())
                        .expect("one weight per input of the window per output channel");
                    let thresholds = l.thresholds().to_vec().into_pyarray(py);
                    let geometry = geometry_dict(py, l.geometry(), true)?;
                    geometry.set_item("pad_value", l.pad_value())?;
                    ("conv_binary", weights.into_pyarray(py), thresholds, geometry).into_pyobject(py)?
                }
                Layer::OrPool(l) => {
                    let geometry = geometry_dict(py, l.geometry(), false)?;
                    ("or_pool", py.None(), py.None(), geometry).into_pyobject(py)?
                }
            };
            out.push(tuple);
        }
        Ok(out)
    }

    /// Class scores, int32 `[N, num_classes]`.
    #[pyo3(signature = (x, threads=None, isa=None, optimize=true, num_samples=None))]
    fn scores<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        threads: Option<usize>,
        isa: Option<&str>,
        optimize: bool,
        num_samples: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<i32>>> {
        let options = options(threads, isa, optimize)?;
        let features = Features::new(x, num_samples)?;
        let input = features.input().map_err(to_py)?;
        let out = PyArray2::<i32>::zeros(py, [input.rows(), self.inner.num_classes()], false);
        {
            let mut guard = out.readwrite();
            let slice = guard.as_slice_mut().expect("a new array is contiguous");
            py.allow_threads(|| self.inner.scores_into(input, slice, &options)).map_err(to_py)?;
        }
        Ok(out)
    }

    /// Predicted classes, int64 `[N]`.
    #[pyo3(signature = (x, threads=None, isa=None, optimize=true, num_samples=None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        threads: Option<usize>,
        isa: Option<&str>,
        optimize: bool,
        num_samples: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let options = options(threads, isa, optimize)?;
        let features = Features::new(x, num_samples)?;
        let input = features.input().map_err(to_py)?;
        let out = PyArray1::<i64>::zeros(py, [input.rows()], false);
        {
            let mut guard = out.readwrite();
            let slice = guard.as_slice_mut().expect("a new array is contiguous");
            py.allow_threads(|| self.inner.predict_into(input, slice, &options)).map_err(to_py)?;
        }
        Ok(out)
    }

    /// Builds the optimized program now (with the GIL released) instead of at the first evaluation.
    fn prepare(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.inner.prepare()).map_err(to_py)
    }

    /// What the optimizing passes removed and the program sizes before and after.
    fn optimization<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let o = py.allow_threads(|| self.inner.optimization()).map_err(to_py)?;
        let program = |p: &ProgramStats| -> PyResult<Bound<'py, PyDict>> {
            let d = PyDict::new(py);
            d.set_item("ops", p.total_ops())?;
            d.set_item("inverters", p.ops[1])?;
            d.set_item("two_input_ops", p.ops[2])?;
            d.set_item("three_input_ops", p.ops[3])?;
            d.set_item("binary_rows", p.binary_rows)?;
            d.set_item("binary_weights", p.binary_weights)?;
            d.set_item("inputs_read", p.inputs_read)?;
            d.set_item("slots", p.slots)?;
            d.set_item("depth", p.depth)?;
            Ok(d)
        };
        let passes = PyDict::new(py);
        let r = &o.passes;
        for (name, value) in [
            ("constants", r.constants),
            ("wires", r.wires),
            ("inverters_absorbed", r.inverters_absorbed),
            ("merged", r.merged),
            ("inputs_removed", r.inputs_removed),
            ("luts_split", r.luts_split),
            ("fused", r.fused),
            ("dead", r.dead),
            ("binary_inputs_folded", r.binary_inputs_folded),
            ("binary_rows_constant", r.binary_rows_constant),
        ] {
            passes.set_item(name, value)?;
        }
        let dict = PyDict::new(py);
        dict.set_item("before", program(&o.before)?)?;
        dict.set_item("after", program(&o.after)?)?;
        dict.set_item("passes", passes)?;
        Ok(dict)
    }

    /// The compiled program the engine evaluates (optimized, or every gate and table as written), for back ends that
    /// run it elsewhere (the GPU); what its slots and steps mean is documented at `bitlogic::ProgramView`. Numpy
    /// arrays: `input_bits` uint32, `ops` uint32 `[M, 4]` (`[a, b, c, out]` slots) and `imms` uint8 `[M]` (each
    /// operation's truth table), the `steps` in order (`kind` "ops" with `imm`, `start`, `end`, or "binary" with
    /// `inputs`, `weights` uint64 `[outputs, ceil(inputs / 64)]`, `thresholds` int32, `outputs`), and the `classes`
    /// (`slots`, `inverted`, `ones`).
    #[pyo3(signature = (optimize=true))]
    fn program<'py>(&self, py: Python<'py>, optimize: bool) -> PyResult<Bound<'py, PyDict>> {
        // Compiled with the GIL released (kept in the network), then read with it.
        py.allow_threads(|| self.inner.program(optimize).map(|_| ())).map_err(to_py)?;
        let view = self.inner.program(optimize).map_err(to_py)?;
        let all_ops = view.ops();
        let mut imms = vec![0u8; all_ops.len()];
        let steps = PyList::empty(py);
        for step in view.steps() {
            let d = PyDict::new(py);
            match step {
                bitlogic::ProgramStep::Ops { imm, start, end, .. } => {
                    imms[start..end].fill(imm);
                    d.set_item("kind", "ops")?;
                    d.set_item("imm", imm)?;
                    d.set_item("start", start)?;
                    d.set_item("end", end)?;
                }
                bitlogic::ProgramStep::Binary(b) => {
                    let weights = Array2::from_shape_vec((b.outputs.len(), b.words_per_row()), b.weights.to_vec())
                        .expect("one weight row per output");
                    d.set_item("kind", "binary")?;
                    d.set_item("inputs", PyArray1::from_slice(py, b.inputs))?;
                    d.set_item("weights", weights.into_pyarray(py))?;
                    d.set_item("thresholds", PyArray1::from_slice(py, b.thresholds))?;
                    d.set_item("outputs", PyArray1::from_slice(py, b.outputs))?;
                }
            }
            steps.append(d)?;
        }
        let classes = PyList::empty(py);
        for class in view.classes() {
            let d = PyDict::new(py);
            d.set_item("slots", PyArray1::from_slice(py, class.slots))?;
            d.set_item("inverted", PyArray1::from_slice(py, class.inverted))?;
            d.set_item("ones", class.ones)?;
            classes.append(d)?;
        }
        let ops = Array2::from_shape_vec((all_ops.len(), 4), all_ops.iter().flatten().copied().collect())
            .expect("four slots per operation");
        let dict = PyDict::new(py);
        dict.set_item("input_bits", PyArray1::from_slice(py, view.input_bits()))?;
        dict.set_item("num_slots", view.num_slots())?;
        dict.set_item("false_slot", view.false_slot())?;
        dict.set_item("true_slot", view.true_slot())?;
        dict.set_item("ops", ops.into_pyarray(py))?;
        dict.set_item("imms", imms.into_pyarray(py))?;
        dict.set_item("steps", steps)?;
        dict.set_item("classes", classes)?;
        Ok(dict)
    }

    /// Counts of gates, tables and weights, depth and size.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let dict = PyDict::new(py);
        dict.set_item("num_inputs", s.num_inputs)?;
        dict.set_item("num_input_bits", s.num_input_bits)?;
        dict.set_item("num_classes", s.num_classes)?;
        dict.set_item("gates", s.gates)?;
        dict.set_item("luts", s.luts)?;
        dict.set_item("binary_weights", s.binary_weights)?;
        dict.set_item("depth", s.depth)?;
        dict.set_item("bytes", s.bytes)?;
        Ok(dict)
    }

    #[getter]
    fn num_inputs(&self) -> usize {
        self.inner.num_inputs()
    }
    #[getter]
    fn num_input_bits(&self) -> usize {
        self.inner.num_input_bits()
    }
    #[getter]
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    #[getter]
    fn tau(&self) -> f64 {
        self.inner.tau()
    }
    #[getter]
    fn info(&self) -> BTreeMap<String, String> {
        self.inner.info().clone()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.downcast::<PyNetwork>().is_ok_and(|o| *o.get().inner == *self.inner)
    }
}

/// A layer part, `(kind, a, b)` or `(kind, a, b, geometry)`, taken apart.
type LayerPart<'py> = (String, Bound<'py, PyAny>, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

fn layer_part<'py>(item: &Bound<'py, PyAny>) -> Result<LayerPart<'py>, String> {
    let expected = "expected a tuple (kind, array, array) or, for a spatial kind, (kind, array, array, geometry)";
    let tuple = item.downcast::<PyTuple>().map_err(|_| format!("{expected}, got {}", type_name(item)))?;
    if !(3..=4).contains(&tuple.len()) {
        return Err(format!("{expected}, got a tuple of {} items", tuple.len()));
    }
    let kind: String = tuple.get_item(0).and_then(|k| k.extract()).map_err(|_| format!("{expected}: kind a string"))?;
    let item = |i: usize| tuple.get_item(i).map_err(|e| e.to_string());
    let geometry = if tuple.len() == 4 { Some(item(3)?) } else { None };
    Ok((kind, item(1)?, item(2)?, geometry))
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map_or_else(|_| "an object".to_string(), |n| n.to_string())
}

/// `obj` as a numpy array of `T` with `D` dimensions, or an error naming `name`, its expected shape and dtype.
fn typed_array<'py, T: Element, D: Dimension>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    shape: &str,
) -> Result<PyReadonlyArray<'py, T, D>, String> {
    let want = format!("{name}: expected a {}-dimensional {} array of shape {shape}", D::NDIM.unwrap_or(0), {
        dtype::<T>(obj.py()).str().map_or_else(|_| "?".to_string(), |s| s.to_string())
    });
    let array = arrays::untyped_array(obj, name).map_err(|e| e.to_string())?;
    if Some(array.ndim()) != D::NDIM {
        return Err(format!("{want}, got shape {:?}", array.shape()));
    }
    if !array.dtype().is_equiv_to(&dtype::<T>(obj.py())) {
        return Err(format!("{want}, got dtype {}", arrays::dtype_name(array)));
    }
    obj.extract().map_err(|e: PyErr| e.to_string())
}

/// The geometry dict of a spatial part: `input_shape`, `kernel_size`, `stride`, with `padding` for the conv kinds
/// (`padded`) and the `extra` keys (`pad_value`), each an error naming it when missing or not of its form; a key
/// of no such name is an error too (a misspelt one would otherwise be a silent default).
fn geometry_from<'py>(
    geometry: Option<&Bound<'py, PyAny>>,
    padded: bool,
    extra: &[&str],
) -> Result<(Geometry, Bound<'py, PyDict>), String> {
    let mut keys = vec!["input_shape", "kernel_size", "stride"];
    if padded {
        keys.push("padding");
    }
    keys.extend_from_slice(extra);
    let expected = format!("geometry: expected a dict of {}", keys.join(", "));
    let dict = geometry.ok_or_else(|| format!("{expected} as the part's fourth item"))?;
    let dict = dict.downcast::<PyDict>().map_err(|_| format!("{expected}, got {}", type_name(dict)))?.clone();
    for key in dict.keys() {
        let known = key.extract::<String>().is_ok_and(|k| keys.contains(&k.as_str()));
        if !known {
            return Err(format!("{expected}, got the key {key}"));
        }
    }
    let input_shape: [usize; 3] = geometry_value(&dict, "input_shape", "3 integers (C, H, W)")?;
    let kernel_size: [usize; 2] = geometry_value(&dict, "kernel_size", "2 integers (kh, kw)")?;
    let stride: [usize; 2] = geometry_value(&dict, "stride", "2 integers (sh, sw)")?;
    let padding: [usize; 2] = if padded { geometry_value(&dict, "padding", "2 integers (ph, pw)")? } else { [0, 0] };
    let geometry = Geometry::new(input_shape, kernel_size, stride, padding).map_err(network_message)?;
    Ok((geometry, dict))
}

fn geometry_value<'py, T: FromPyObject<'py>>(dict: &Bound<'py, PyDict>, key: &str, what: &str) -> Result<T, String> {
    let value = dict.get_item(key).map_err(|e| e.to_string())?.ok_or_else(|| format!("geometry: {key} is missing"))?;
    value.extract().map_err(|_| format!("geometry: {key}: expected {what} >= 0, got {value}"))
}

/// The geometry of a spatial layer as the dict of its part (`padding` for the conv kinds).
fn geometry_dict<'py>(py: Python<'py>, geometry: &Geometry, padded: bool) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let [c, h, w] = geometry.input_shape();
    dict.set_item("input_shape", (c, h, w))?;
    let pair = |[a, b]: [usize; 2]| (a, b);
    dict.set_item("kernel_size", pair(geometry.kernel_size()))?;
    dict.set_item("stride", pair(geometry.stride()))?;
    if padded {
        dict.set_item("padding", pair(geometry.padding()))?;
    }
    Ok(dict)
}

/// Leaves `[O, count, 3]` of `(c, dy, dx)` as rows of three.
fn leaves_from(leaves: &PyReadonlyArray<'_, u32, Ix3>, what: &str) -> Result<(usize, usize, Vec<[u32; 3]>), String> {
    let leaves = leaves.as_array();
    let (channels, count, three) = leaves.dim();
    if three != 3 {
        return Err(format!("leaves: expected shape [O, {what}, 3] (c, dy, dx), got {:?}", leaves.shape()));
    }
    let rows = leaves.outer_iter().flat_map(|tree| tree.outer_iter().map(|r| [r[0], r[1], r[2]]).collect::<Vec<_>>());
    Ok((channels, count, rows.collect()))
}

fn leaves_array(channels: usize, leaves: &[[u32; 3]]) -> Array3<u32> {
    let flat: Vec<u32> = leaves.iter().flatten().copied().collect();
    Array3::from_shape_vec((channels, leaves.len() / channels.max(1), 3), flat).expect("three values per leaf")
}

fn network_message(error: Error) -> String {
    match error {
        Error::Network(message) => message,
        other => other.to_string(),
    }
}

/// A spatial layer from its part; `None` for a kind that is not spatial.
fn spatial_layer(
    kind: &str,
    first: &Bound<'_, PyAny>,
    second: &Bound<'_, PyAny>,
    geometry: Option<&Bound<'_, PyAny>>,
) -> Option<Result<Layer, String>> {
    let layer = || -> Result<Layer, String> {
        match kind {
            "conv_gates" => {
                let (geometry, _) = geometry_from(geometry, true, &[])?;
                let leaves = typed_array::<u32, Ix3>(first, "leaves", "[O, 2^depth, 3]")?;
                let (channels, count, leaves) = leaves_from(&leaves, "2^depth")?;
                if count < 2 || !count.is_power_of_two() {
                    return Err(format!(
                        "leaves: expected shape [O, 2^depth, 3] with depth >= 1, got {channels} x {count} x 3"
                    ));
                }
                let ops = typed_array::<u8, Ix2>(second, "ops", "[O, 2^depth - 1]")?;
                let ops = ops.as_array();
                if ops.dim() != (channels, count - 1) {
                    return Err(format!(
                        "ops: expected shape [{channels}, {}] (2^depth - 1 gates per tree), got {:?}",
                        count - 1,
                        ops.shape()
                    ));
                }
                let depth = count.trailing_zeros() as usize;
                ConvGateLayer::new(geometry, depth, leaves, ops.iter().copied().collect()).map(Layer::ConvGates)
            }
            "conv_luts" => {
                let (geometry, _) = geometry_from(geometry, true, &[])?;
                let leaves = typed_array::<u32, Ix3>(first, "leaves", "[O, n, 3]")?;
                let (channels, arity, leaves) = leaves_from(&leaves, "n")?;
                let tables = typed_array::<u8, Ix2>(second, "tables", "[O, 2^n]")?;
                let tables = tables.as_array();
                if arity > 16 || tables.dim() != (channels, 1 << arity) {
                    return Err(format!("tables: expected shape [{channels}, 2^{arity}], got {:?}", tables.shape()));
                }
                let entries: Vec<u8> = tables.iter().copied().collect();
                ConvLutLayer::from_unpacked(geometry, arity, leaves, &entries).map(Layer::ConvLuts)
            }
            "conv_binary" => {
                let (geometry, dict) = geometry_from(geometry, true, &["pad_value"])?;
                let pad_value: u8 = geometry_value(&dict, "pad_value", "0 or 1")?;
                let [c, _, _] = geometry.input_shape();
                let [kh, kw] = geometry.kernel_size();
                let shape = format!("[O, {}] (C*kh*kw)", c * kh * kw);
                let weights = typed_array::<u8, Ix2>(first, "weights", &shape)?;
                let weights = weights.as_array();
                if weights.ncols() != c * kh * kw {
                    return Err(format!("weights: expected shape {shape}, got {:?}", weights.shape()));
                }
                let thresholds = typed_array::<i32, Ix1>(second, "thresholds", "[O]")?;
                let bits: Vec<u8> = weights.iter().copied().collect();
                ConvBinaryLayer::from_unpacked(geometry, &bits, thresholds.as_array().to_vec(), pad_value)
                    .map(Layer::ConvBinary)
            }
            "or_pool" => {
                if !(first.is_none() && second.is_none()) {
                    return Err("expected no arrays: the part is (\"or_pool\", None, None, geometry)".to_string());
                }
                let (geometry, _) = geometry_from(geometry, false, &[])?;
                OrPoolLayer::new(geometry.input_shape(), geometry.kernel_size(), geometry.stride()).map(Layer::OrPool)
            }
            _ => unreachable!("only spatial kinds get here"),
        }
        .map_err(network_message)
    };
    matches!(kind, "conv_gates" | "conv_luts" | "conv_binary" | "or_pool").then(layer)
}

fn layer_from_arrays(
    kind: &str,
    first: &Bound<'_, PyAny>,
    second: &Bound<'_, PyAny>,
    geometry: Option<&Bound<'_, PyAny>>,
    input_width: usize,
) -> Result<Layer, String> {
    if let Some(layer) = spatial_layer(kind, first, second, geometry) {
        return layer;
    }
    if geometry.is_some() && matches!(kind, "gates" | "luts" | "binary") {
        return Err(format!("expected a (kind, array, array) part: {kind} layers have no geometry"));
    }
    let extract_error = |e: PyErr| e.to_string();
    let layer = match kind {
        "gates" => {
            let wires: PyReadonlyArray2<'_, u32> = first.extract().map_err(extract_error)?;
            let ops: PyReadonlyArray1<'_, u8> = second.extract().map_err(extract_error)?;
            let wires = wires.as_array();
            if wires.ncols() != 2 {
                return Err(format!("inputs: expected shape [G, 2], got {:?}", wires.shape()));
            }
            let pairs = wires.rows().into_iter().map(|r| [r[0], r[1]]).collect();
            GateLayer::new(pairs, ops.as_array().to_vec()).map(Layer::Gates)
        }
        "luts" => {
            let wires: PyReadonlyArray2<'_, u32> = first.extract().map_err(extract_error)?;
            let tables: PyReadonlyArray2<'_, u8> = second.extract().map_err(extract_error)?;
            let (wires, tables) = (wires.as_array(), tables.as_array());
            let arity = wires.ncols();
            if tables.nrows() != wires.nrows() || arity > 16 || tables.ncols() != 1 << arity {
                return Err(format!("tables: expected shape [{}, 2^{arity}], got {:?}", wires.nrows(), tables.shape()));
            }
            let entries: Vec<u8> = tables.iter().copied().collect();
            LutLayer::from_unpacked(arity, wires.iter().copied().collect(), &entries).map(Layer::Luts)
        }
        "binary" => {
            let weights: PyReadonlyArray2<'_, u8> = first.extract().map_err(extract_error)?;
            let thresholds: PyReadonlyArray1<'_, i32> = second.extract().map_err(extract_error)?;
            let weights = weights.as_array();
            if weights.ncols() != input_width {
                return Err(format!(
                    "weights: expected shape [O, {input_width}] (one column per input bit), got {:?}",
                    weights.shape()
                ));
            }
            let bits: Vec<u8> = weights.iter().copied().collect();
            BinaryLayer::from_unpacked(input_width, &bits, thresholds.as_array().to_vec()).map(Layer::Binary)
        }
        other => {
            return Err(format!(
                "unknown layer kind {other:?}; expected gates, luts, binary, conv_gates, conv_luts, conv_binary or \
                 or_pool"
            ))
        }
    };
    layer.map_err(network_message)
}

/// A random network over `num_inputs` input bits, for tests and benchmarks.
#[pyfunction]
#[pyo3(signature = (num_inputs, widths, num_classes, kind="gates", n=6, seed=0))]
fn random_network(
    py: Python<'_>,
    num_inputs: usize,
    widths: Vec<usize>,
    num_classes: usize,
    kind: &str,
    n: usize,
    seed: u64,
) -> PyResult<PyNetwork> {
    let kind = match kind {
        "gates" => LayerKind::Gates,
        "luts" => LayerKind::Luts { arity: n },
        "binary" => LayerKind::Binary,
        other => return Err(InputError::new_err(format!("kind: expected 'gates', 'luts' or 'binary', got {other:?}"))),
    };
    py.allow_threads(|| bitlogic::random_network(num_inputs, &widths, num_classes, kind, seed))
        .map(PyNetwork::wrap)
        .map_err(to_py)
}

/// Names of the instruction-set paths this CPU supports, slowest first.
#[pyfunction]
fn supported_isas() -> Vec<&'static str> {
    Isa::supported().into_iter().map(Isa::name).collect()
}

/// The path used when none is asked for (`BITLOGIC_ISA` or the fastest supported).
#[pyfunction]
fn default_isa() -> PyResult<&'static str> {
    Isa::default_for_machine().map(Isa::name).map_err(to_py)
}

/// Writes `data` to `path` atomically (the core's one atomic write, with the GIL released): through a temporary
/// file of a name unique to this write, synced, renamed over `path`, and the directory synced, so `path` is always
/// either its old content or all of `data`, even with other threads or processes writing it at once.
#[pyfunction]
fn write_atomic(py: Python<'_>, path: PathBuf, data: &[u8]) -> PyResult<()> {
    py.allow_threads(|| bitlogic::write_atomic(&path, data)).map_err(to_py)
}

/// The CUDA kernel sources shipped with the extension, by file name.
#[pyfunction]
fn cuda_sources() -> BTreeMap<&'static str, &'static str> {
    CUDA_SOURCES.iter().copied().collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("FORMAT_VERSION", bitlogic::FORMAT_VERSION)?;
    // The core's limits and op-code convention, read by the Python and GPU code instead of restated there.
    m.add("MAX_ARITY", bitlogic::MAX_ARITY)?;
    m.add("MAX_WIDTH", bitlogic::MAX_WIDTH)?;
    m.add("NUM_OPS", bitlogic::ops::NUM_OPS)?;
    let op_tables = bitlogic::ops::OP_TABLES.iter().map(|t| PyTuple::new(py, t)).collect::<PyResult<Vec<_>>>()?;
    m.add("OP_TABLES", PyTuple::new(py, op_tables)?)?;
    m.add("BitlogicError", py.get_type::<BitlogicError>())?;
    m.add("FormatError", py.get_type::<FormatError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add_function(wrap_pyfunction!(cuda_sources, m)?)?;
    m.add_class::<PyNetwork>()?;
    m.add_function(wrap_pyfunction!(random_network, m)?)?;
    m.add_function(wrap_pyfunction!(supported_isas, m)?)?;
    m.add_function(wrap_pyfunction!(default_isa, m)?)?;
    m.add_function(wrap_pyfunction!(write_atomic, m)?)?;
    train::register(m)?;
    Ok(())
}
