//! The fused CPU training kernels of `bitlogic-train` (gate layers, the candidate mix of learned wiring): argument
//! checks, the GIL released around each kernel, outputs as new numpy arrays.

use std::num::NonZeroUsize;

use numpy::ndarray::{Array2, Array3, Dimension, IntoDimension};
use numpy::{
    dtype, IntoPyArray, PyArray, PyArray2, PyArray3, PyArray4, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1,
    PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::arrays::{contiguous, dtype_name, f32_matrix, untyped_array};
use crate::{to_py, InputError};

/// Gate wires: a 1-D int64 array of indices below `in_dim`, as `u32`.
fn wires(obj: &Bound<'_, PyAny>, name: &str, in_dim: usize) -> PyResult<Vec<u32>> {
    let array = untyped_array(obj, name)?;
    if array.ndim() != 1 || !array.dtype().is_equiv_to(&dtype::<i64>(obj.py())) {
        return Err(InputError::new_err(format!(
            "{name}: expected a 1-dimensional int64 array of wire indices, got dtype {} and shape {:?}",
            dtype_name(array),
            array.shape()
        )));
    }
    let array: PyReadonlyArray1<'_, i64> = obj.extract()?;
    let wires: Vec<i64> = match array.as_slice() {
        Ok(slice) => slice.to_vec(),
        Err(_) => array.as_array().to_vec(),
    };
    let limit = (in_dim as u64).min(1 << 32) as i64; // wires are u32 in the core crate
    if let Some((gate, &w)) = wires.iter().enumerate().find(|(_, &w)| !(0..limit).contains(&w)) {
        return Err(InputError::new_err(format!("{name}[{gate}] = {w}: expected a wire in [0, {limit}) (a row of x)")));
    }
    Ok(wires.into_iter().map(|w| w as u32).collect())
}

/// Gate coefficients: a C-contiguous float32 `[N, 4]` array.
fn coefficients(obj: &Bound<'_, PyAny>) -> PyResult<Vec<[f32; 4]>> {
    let array = f32_matrix(obj, "coef", "[N, 4]")?;
    if array.shape()[1] != 4 {
        return Err(InputError::new_err(format!("coef: expected shape [N, 4], got {:?}", array.shape())));
    }
    Ok(contiguous(&array, "coef")?.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect())
}

fn coef_array(py: Python<'_>, rows: Vec<[f32; 4]>) -> Bound<'_, PyArray2<f32>> {
    let n = rows.len();
    Array2::from_shape_vec((n, 4), rows.into_iter().flatten().collect()).expect("4 values per gate").into_pyarray(py)
}

/// A new C-contiguous float32 array left uninitialized, for a kernel to overwrite: the training kernels write every
/// element of their outputs, and saving the zeroing of megabytes per call is worth it there. The array is returned to
/// Python only after the kernel succeeded (they validate everything before writing).
fn uninit_f32<D: Dimension>(py: Python<'_>, dims: impl IntoDimension<Dim = D>) -> Bound<'_, PyArray<f32, D>> {
    // SAFETY: every bit pattern is a valid f32, and callers write every element before the array is read.
    unsafe { PyArray::<f32, D>::new(py, dims, false) }
}

/// The arguments every gate kernel takes: the feature-major input `x` `[in_dim, batch]` and the wires `ia`, `ib`.
struct GateLayerArgs<'py> {
    x: PyReadonlyArray2<'py, f32>,
    in_dim: usize,
    batch: usize,
    ia: Vec<u32>,
    ib: Vec<u32>,
}

impl<'py> GateLayerArgs<'py> {
    fn new(x: &Bound<'py, PyAny>, ia: &Bound<'py, PyAny>, ib: &Bound<'py, PyAny>) -> PyResult<Self> {
        let x = f32_matrix(x, "x", "[in_dim, batch]")?;
        let (in_dim, batch) = (x.shape()[0], x.shape()[1]);
        let (ia, ib) = (wires(ia, "ia", in_dim)?, wires(ib, "ib", in_dim)?);
        Ok(Self { x, in_dim, batch, ia, ib })
    }
}

/// The training kernels' `threads` argument: `None` one thread per core, `n >= 1` at most `n` threads (the caller
/// and the kernels' sleeping helpers), `0` rayon's global pool (how the kernels ran before, kept for comparison).
fn kernel_threads(threads: Option<usize>) -> bitlogic_train::Threads {
    match threads {
        None => bitlogic_train::Threads::default(),
        Some(n) => NonZeroUsize::new(n).map_or(bitlogic_train::Threads::RayonPool, bitlogic_train::Threads::AtMost),
    }
}

/// Output `[N, batch]` of a layer of differentiable gates over `x` `[in_dim, batch]` (feature-major).
#[pyfunction]
#[pyo3(signature = (x, ia, ib, coef, *, threads=None))]
fn gate_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    ia: &Bound<'py, PyAny>,
    ib: &Bound<'py, PyAny>,
    coef: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let threads = kernel_threads(threads);
    let GateLayerArgs { x, in_dim, batch, ia, ib } = GateLayerArgs::new(x, ia, ib)?;
    let coef = coefficients(coef)?;
    let x = contiguous(&x, "x")?;
    let out = uninit_f32(py, [ia.len(), batch]);
    {
        let mut guard = out.readwrite();
        let slice = guard.as_slice_mut().expect("a new array is contiguous");
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::gate_forward(x, in_dim, batch, &ia, &ib, &coef, slice)
            })
        })
        .map_err(to_py)?;
    }
    Ok(out)
}

type Float32Pair<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<f32>>);

/// Gradients `(grad_x [in_dim, batch], grad_coef [N, 4])` of `gate_forward` given `grad_out` `[N, batch]`.
#[pyfunction]
#[pyo3(signature = (x, ia, ib, coef, grad_out, *, threads=None))]
fn gate_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    ia: &Bound<'py, PyAny>,
    ib: &Bound<'py, PyAny>,
    coef: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Float32Pair<'py>> {
    let threads = kernel_threads(threads);
    let GateLayerArgs { x, in_dim, batch, ia, ib } = GateLayerArgs::new(x, ia, ib)?;
    let coef = coefficients(coef)?;
    let grad_out = f32_matrix(grad_out, "grad_out", "[N, batch]")?;
    let (x, grad_out) = (contiguous(&x, "x")?, contiguous(&grad_out, "grad_out")?);
    let grad_x = uninit_f32(py, [in_dim, batch]);
    let mut grad_coef = vec![[0.0f32; 4]; ia.len()];
    {
        let mut guard = grad_x.readwrite();
        let slice = guard.as_slice_mut().expect("a new array is contiguous");
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::gate_backward(x, in_dim, batch, &ia, &ib, &coef, grad_out, slice, &mut grad_coef)
            })
        })
        .map_err(to_py)?;
    }
    Ok((grad_x, coef_array(py, grad_coef)))
}

/// The coefficient gradient `[N, 4]` alone, for a layer whose input needs no gradient.
#[pyfunction]
#[pyo3(signature = (x, ia, ib, grad_out, *, threads=None))]
fn gate_backward_coef<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    ia: &Bound<'py, PyAny>,
    ib: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let threads = kernel_threads(threads);
    let GateLayerArgs { x, in_dim, batch, ia, ib } = GateLayerArgs::new(x, ia, ib)?;
    let grad_out = f32_matrix(grad_out, "grad_out", "[N, batch]")?;
    let (x, grad_out) = (contiguous(&x, "x")?, contiguous(&grad_out, "grad_out")?);
    let mut grad_coef = vec![[0.0f32; 4]; ia.len()];
    py.allow_threads(|| {
        bitlogic_train::with_threads(threads, || {
            bitlogic_train::gate_backward_coef(x, in_dim, batch, &ia, &ib, grad_out, &mut grad_coef)
        })
    })
    .map_err(to_py)?;
    Ok(coef_array(py, grad_coef))
}

/// A candidate pool: a 2-D int64 `[R, K]` array of wire indices, as `u32` (the kernels check them against
/// `in_dim`), and `(R, K)`.
fn candidate_pool(obj: &Bound<'_, PyAny>) -> PyResult<(Vec<u32>, usize, usize)> {
    let array = untyped_array(obj, "pool")?;
    if array.ndim() != 2 || !array.dtype().is_equiv_to(&dtype::<i64>(obj.py())) {
        return Err(InputError::new_err(format!(
            "pool: expected a 2-dimensional int64 array [R, K] of wire indices, got dtype {} and shape {:?}",
            dtype_name(array),
            array.shape()
        )));
    }
    let array: PyReadonlyArray2<'_, i64> = obj.extract()?;
    let (rows, k) = (array.shape()[0], array.shape()[1]);
    let view = array.as_array();
    let mut pool = Vec::with_capacity(view.len());
    for (slot, &w) in view.iter().enumerate() {
        let Ok(w) = u32::try_from(w) else {
            let (r, j) = (slot / k.max(1), slot % k.max(1));
            return Err(InputError::new_err(format!(
                "pool[{r}, {j}] = {w}: expected a wire in [0, 2**32) (a row of x)"
            )));
        };
        pool.push(w);
    }
    Ok((pool, rows, k))
}

/// A float32 `[R, K]` weight matrix of the pool's shape.
fn pool_weights<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    rows: usize,
    k: usize,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let array = f32_matrix(obj, name, "[R, K] (the shape of pool)")?;
    if array.shape() != [rows, k] {
        return Err(InputError::new_err(format!(
            "{name}: expected shape [{rows}, {k}] (that of pool), got {:?}",
            array.shape()
        )));
    }
    Ok(array)
}

/// Output `[R, batch]` of the candidate mix `out[r] = sum_k w[r, k] * x[pool[r, k]]` over `x` `[in_dim, batch]`.
#[pyfunction]
#[pyo3(signature = (x, pool, w, *, threads=None))]
fn candidate_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    pool: &Bound<'py, PyAny>,
    w: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let threads = kernel_threads(threads);
    let x = f32_matrix(x, "x", "[in_dim, batch]")?;
    let (in_dim, batch) = (x.shape()[0], x.shape()[1]);
    let (pool, rows, k) = candidate_pool(pool)?;
    let w = pool_weights(w, "w", rows, k)?;
    let (x, w) = (contiguous(&x, "x")?, contiguous(&w, "w")?);
    let out = uninit_f32(py, [rows, batch]);
    {
        let mut guard = out.readwrite();
        let slice = guard.as_slice_mut().expect("a new array is contiguous");
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::candidate_forward(x, in_dim, batch, &pool, k, w, slice)
            })
        })
        .map_err(to_py)?;
    }
    Ok(out)
}

type CandidateGrads<'py> = (Bound<'py, PyArray2<f32>>, Option<Bound<'py, PyArray2<f32>>>);

/// Gradients `(grad_w [R, K], grad_x [in_dim, batch] or None)` of `candidate_forward` given `grad_out` `[R, batch]`;
/// `grad_x` (weighted by `v` `[R, K]`) only when `need_x`.
#[pyfunction]
#[pyo3(signature = (x, pool, v, grad_out, need_x, *, threads=None))]
fn candidate_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    pool: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    need_x: bool,
    threads: Option<usize>,
) -> PyResult<CandidateGrads<'py>> {
    let threads = kernel_threads(threads);
    let x = f32_matrix(x, "x", "[in_dim, batch]")?;
    let (in_dim, batch) = (x.shape()[0], x.shape()[1]);
    let (pool, rows, k) = candidate_pool(pool)?;
    let v = pool_weights(v, "v", rows, k)?;
    let grad_out = f32_matrix(grad_out, "grad_out", "[R, batch]")?;
    let (x, v, grad_out) = (contiguous(&x, "x")?, contiguous(&v, "v")?, contiguous(&grad_out, "grad_out")?);
    let grad_w = uninit_f32(py, [rows, k]);
    let grad_x = need_x.then(|| uninit_f32(py, [in_dim, batch]));
    {
        let mut w_guard = grad_w.readwrite();
        let w_slice = w_guard.as_slice_mut().expect("a new array is contiguous");
        let mut x_guard = grad_x.as_ref().map(|a| a.readwrite());
        let x_slice = x_guard.as_mut().map(|g| g.as_slice_mut().expect("a new array is contiguous"));
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::candidate_backward(x, in_dim, batch, &pool, k, v, grad_out, w_slice, x_slice)
            })
        })
        .map_err(to_py)?;
    }
    Ok((grad_w, grad_x))
}

/// Output `[N, batch]` of a gate layer with learned wiring over `x` `[in_dim, batch]`: gate `n` mixes its wire A
/// from row `n` of `pool` / `w` (`[2N, K]`) and its wire B from row `N + n`.
#[pyfunction]
#[pyo3(signature = (x, pool, w, coef, *, threads=None))]
fn learned_gate_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    pool: &Bound<'py, PyAny>,
    w: &Bound<'py, PyAny>,
    coef: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let threads = kernel_threads(threads);
    let x = f32_matrix(x, "x", "[in_dim, batch]")?;
    let (in_dim, batch) = (x.shape()[0], x.shape()[1]);
    let (pool, rows, k) = candidate_pool(pool)?;
    let w = pool_weights(w, "w", rows, k)?;
    let coef = coefficients(coef)?;
    let (x, w) = (contiguous(&x, "x")?, contiguous(&w, "w")?);
    let out = uninit_f32(py, [rows / 2, batch]);
    {
        let mut guard = out.readwrite();
        let slice = guard.as_slice_mut().expect("a new array is contiguous");
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::learned_gate_forward(x, in_dim, batch, &pool, k, w, &coef, slice)
            })
        })
        .map_err(to_py)?;
    }
    Ok(out)
}

/// Gradients `(grad_w [2N, K], grad_coef [N, 4])` of `learned_gate_forward` given `grad_out` `[N, batch]`, for a
/// layer whose input needs no gradient.
#[pyfunction]
#[pyo3(signature = (x, pool, w, coef, grad_out, *, threads=None))]
fn learned_gate_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    pool: &Bound<'py, PyAny>,
    w: &Bound<'py, PyAny>,
    coef: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Float32Pair<'py>> {
    let threads = kernel_threads(threads);
    let x = f32_matrix(x, "x", "[in_dim, batch]")?;
    let (in_dim, batch) = (x.shape()[0], x.shape()[1]);
    let (pool, rows, k) = candidate_pool(pool)?;
    let w = pool_weights(w, "w", rows, k)?;
    let coef = coefficients(coef)?;
    let grad_out = f32_matrix(grad_out, "grad_out", "[N, batch]")?;
    let (x, w, grad_out) = (contiguous(&x, "x")?, contiguous(&w, "w")?, contiguous(&grad_out, "grad_out")?);
    let grad_w = uninit_f32(py, [rows, k]);
    let mut grad_coef = vec![[0.0f32; 4]; coef.len()];
    {
        let mut guard = grad_w.readwrite();
        let slice = guard.as_slice_mut().expect("a new array is contiguous");
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::learned_gate_backward(
                    x,
                    in_dim,
                    batch,
                    &pool,
                    k,
                    w,
                    &coef,
                    grad_out,
                    slice,
                    &mut grad_coef,
                )
            })
        })
        .map_err(to_py)?;
    }
    Ok((grad_w, coef_array(py, grad_coef)))
}

/// `obj` as a C-contiguous float32 array of `ndim` dimensions (`shape` describes them for the error message).
fn f32_tensor<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    ndim: usize,
    shape: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    let array = untyped_array(obj, name)?;
    if array.ndim() != ndim || !array.dtype().is_equiv_to(&dtype::<f32>(obj.py())) {
        return Err(InputError::new_err(format!(
            "{name}: expected a {ndim}-dimensional float32 array of shape {shape}, got dtype {} and shape {:?}",
            dtype_name(array),
            array.shape()
        )));
    }
    if !array.is_c_contiguous() {
        return Err(InputError::new_err(format!(
            "{name}: expected a C-contiguous array (numpy.ascontiguousarray makes one), got strides {:?}",
            array.strides()
        )));
    }
    obj.extract()
}

fn tensor_slice<'a>(array: &'a PyReadonlyArrayDyn<'_, f32>, name: &str) -> PyResult<&'a [f32]> {
    array.as_slice().map_err(|_| InputError::new_err(format!("{name}: expected a C-contiguous array")))
}

/// A `(rows, columns)` pair of a convolution's geometry, each at least `min`.
fn geometry_pair(name: &str, (a, b): (i64, i64), min: i64) -> PyResult<[usize; 2]> {
    match (usize::try_from(a), usize::try_from(b)) {
        (Ok(ua), Ok(ub)) if a >= min && b >= min => Ok([ua, ub]),
        _ => Err(InputError::new_err(format!("{name}: expected two integers of at least {min}, got ({a}, {b})"))),
    }
}

/// The checked arguments of the tree-convolution kernels.
struct TreeConvArgs<'py> {
    x: PyReadonlyArrayDyn<'py, f32>,
    shape: bitlogic_train::ConvShape,
    depth: usize,
    leaves: Vec<[u32; 3]>,
    coef: Vec<[f32; 4]>,
    /// `[B, O, H', W']`.
    output: [usize; 4],
}

impl<'py> TreeConvArgs<'py> {
    fn new(
        x: &Bound<'py, PyAny>,
        leaves: &Bound<'py, PyAny>,
        coef: &Bound<'py, PyAny>,
        kernel_size: (i64, i64),
        stride: (i64, i64),
        padding: (i64, i64),
    ) -> PyResult<Self> {
        let x = f32_tensor(x, "x", 4, "[B, C, H, W]")?;
        let input: [usize; 4] = x.shape().try_into().expect("4 dimensions");
        let shape = bitlogic_train::ConvShape {
            input,
            kernel_size: geometry_pair("kernel_size", kernel_size, 1)?,
            stride: geometry_pair("stride", stride, 1)?,
            padding: geometry_pair("padding", padding, 0)?,
        };
        let [ho, wo] = shape.output_size().map_err(to_py)?;
        let (leaves, out_channels, per_tree) = tree_leaves(leaves)?;
        if !per_tree.is_power_of_two() || per_tree < 2 {
            return Err(InputError::new_err(format!(
                "leaves: expected shape [O, 2**depth, 3] with depth >= 1, got {per_tree} leaves per tree"
            )));
        }
        let coef_array = f32_tensor(coef, "coef", 3, "[O, 2**depth - 1, 4]")?;
        if coef_array.shape() != [out_channels, per_tree - 1, 4] {
            return Err(InputError::new_err(format!(
                "coef: expected shape [{out_channels}, {}, 4] (one row per gate of the trees of leaves), got {:?}",
                per_tree - 1,
                coef_array.shape()
            )));
        }
        let coef = tensor_slice(&coef_array, "coef")?.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
        let depth = per_tree.trailing_zeros() as usize;
        Ok(Self { x, shape, depth, leaves, coef, output: [input[0], out_channels, ho, wo] })
    }
}

/// Tree leaves: a 3-D int64 `[O, L, 3]` array of `(c, dy, dx)` rows, as `u32` (the kernels check them against the
/// geometry), with `O` and `L`.
fn tree_leaves(obj: &Bound<'_, PyAny>) -> PyResult<(Vec<[u32; 3]>, usize, usize)> {
    let array = untyped_array(obj, "leaves")?;
    if array.ndim() != 3 || array.shape()[2] != 3 || !array.dtype().is_equiv_to(&dtype::<i64>(obj.py())) {
        return Err(InputError::new_err(format!(
            "leaves: expected a 3-dimensional int64 array [O, 2**depth, 3] of (c, dy, dx) rows, got dtype {} and \
             shape {:?}",
            dtype_name(array),
            array.shape()
        )));
    }
    let array: PyReadonlyArrayDyn<'_, i64> = obj.extract()?;
    let (out_channels, per_tree) = (array.shape()[0], array.shape()[1]);
    let view = array.as_array();
    let flat: Vec<i64> = view.iter().copied().collect();
    let mut leaves = Vec::with_capacity(flat.len() / 3);
    for (k, row) in flat.chunks_exact(3).enumerate() {
        let Ok(converted) = row.iter().map(|&v| u32::try_from(v)).collect::<Result<Vec<_>, _>>() else {
            return Err(InputError::new_err(format!(
                "leaves[{}, {}] = {row:?}: expected nonnegative (c, dy, dx) below 2**32",
                k / per_tree.max(1),
                k % per_tree.max(1)
            )));
        };
        leaves.push([converted[0], converted[1], converted[2]]);
    }
    Ok((leaves, out_channels, per_tree))
}

/// Output `[B, O, H', W']` of the tree convolution of `x` `[B, C, H, W]`: tree `o` has the leaves `leaves[o]`
/// (`[2**depth, 3]` rows `(c, dy, dx)` of the receptive field) and the gate coefficients `coef[o]`
/// (`[2**depth - 1, 4]`); zero padding.
#[pyfunction]
#[pyo3(signature = (x, leaves, coef, kernel_size, stride, padding, *, threads=None))]
#[allow(clippy::too_many_arguments)]
fn tree_conv_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    leaves: &Bound<'py, PyAny>,
    coef: &Bound<'py, PyAny>,
    kernel_size: (i64, i64),
    stride: (i64, i64),
    padding: (i64, i64),
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray4<f32>>> {
    let threads = kernel_threads(threads);
    let args = TreeConvArgs::new(x, leaves, coef, kernel_size, stride, padding)?;
    let x = tensor_slice(&args.x, "x")?;
    let out = uninit_f32(py, args.output);
    {
        let mut guard = out.readwrite();
        let slice = guard.as_slice_mut().expect("a new array is contiguous");
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::tree_conv_forward(x, args.shape, args.depth, &args.leaves, &args.coef, slice)
            })
        })
        .map_err(to_py)?;
    }
    Ok(out)
}

type TreeConvGrads<'py> = (Option<Bound<'py, PyArray4<f32>>>, Bound<'py, PyArray3<f32>>);

/// Gradients `(grad_x [B, C, H, W] or None, grad_coef [O, 2**depth - 1, 4])` of `tree_conv_forward` given
/// `grad_out` `[B, O, H', W']`; `grad_x` only when `need_x`. The trees are recomputed from `x`; positions whose
/// `grad_out` is exactly 0 are skipped.
#[pyfunction]
#[pyo3(signature = (x, leaves, coef, grad_out, kernel_size, stride, padding, need_x, *, threads=None))]
#[allow(clippy::too_many_arguments)]
fn tree_conv_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    leaves: &Bound<'py, PyAny>,
    coef: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    kernel_size: (i64, i64),
    stride: (i64, i64),
    padding: (i64, i64),
    need_x: bool,
    threads: Option<usize>,
) -> PyResult<TreeConvGrads<'py>> {
    let threads = kernel_threads(threads);
    let args = TreeConvArgs::new(x, leaves, coef, kernel_size, stride, padding)?;
    let grad_out = f32_tensor(grad_out, "grad_out", 4, "[B, O, H', W'] (that of the output)")?;
    if grad_out.shape() != args.output {
        return Err(InputError::new_err(format!(
            "grad_out: expected shape {:?} (that of the output), got {:?}",
            args.output,
            grad_out.shape()
        )));
    }
    let (x, grad_out) = (tensor_slice(&args.x, "x")?, tensor_slice(&grad_out, "grad_out")?);
    let grad_x = need_x.then(|| uninit_f32(py, args.shape.input));
    let mut grad_coef = vec![[0.0f32; 4]; args.coef.len()];
    {
        let mut x_guard = grad_x.as_ref().map(|a| a.readwrite());
        let x_slice = x_guard.as_mut().map(|g| g.as_slice_mut().expect("a new array is contiguous"));
        py.allow_threads(|| {
            bitlogic_train::with_threads(threads, || {
                bitlogic_train::tree_conv_backward(
                    x,
                    args.shape,
                    args.depth,
                    &args.leaves,
                    &args.coef,
                    grad_out,
                    x_slice,
                    &mut grad_coef,
                )
            })
        })
        .map_err(to_py)?;
    }
    let [_, o, _, _] = args.output;
    let rows = grad_coef.len() / o.max(1);
    let grad_coef = Array3::from_shape_vec((o, rows, 4), grad_coef.into_iter().flatten().collect())
        .expect("4 values per gate")
        .into_pyarray(py);
    Ok((grad_x, grad_coef))
}

/// Adds the training kernels to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gate_forward, m)?)?;
    m.add_function(wrap_pyfunction!(gate_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gate_backward_coef, m)?)?;
    m.add_function(wrap_pyfunction!(candidate_forward, m)?)?;
    m.add_function(wrap_pyfunction!(candidate_backward, m)?)?;
    m.add_function(wrap_pyfunction!(learned_gate_forward, m)?)?;
    m.add_function(wrap_pyfunction!(learned_gate_backward, m)?)?;
    m.add_function(wrap_pyfunction!(tree_conv_forward, m)?)?;
    m.add_function(wrap_pyfunction!(tree_conv_backward, m)?)?;
    Ok(())
}
