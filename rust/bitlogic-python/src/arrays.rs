//! Checked views of numpy arguments: a clear `InputError` naming the argument and what was expected (dtype, shape,
//! layout) instead of a conversion failure.

use numpy::{dtype, Element, PyArrayDescrMethods, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::InputError;

/// `obj` as a numpy array, or an `InputError` naming the argument.
pub(crate) fn untyped_array<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    name: &str,
) -> PyResult<&'a Bound<'py, PyUntypedArray>> {
    obj.downcast::<PyUntypedArray>().map_err(|_| {
        InputError::new_err(format!(
            "{name}: expected a numpy array, got {}",
            obj.get_type().name().map_or_else(|_| "an object".to_string(), |n| n.to_string())
        ))
    })
}

pub(crate) fn dtype_name(array: &Bound<'_, PyUntypedArray>) -> String {
    array.dtype().str().map_or_else(|_| "?".to_string(), |s| s.to_string())
}

/// `obj` as a C-contiguous 2-D float32 array (`shape` describes it for the error message).
pub(crate) fn f32_matrix<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    shape: &str,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let array = untyped_array(obj, name)?;
    if array.ndim() != 2 {
        return Err(InputError::new_err(format!(
            "{name}: expected a 2-dimensional float32 array of shape {shape}, got shape {:?}",
            array.shape()
        )));
    }
    if !array.dtype().is_equiv_to(&dtype::<f32>(obj.py())) {
        return Err(InputError::new_err(format!("{name}: expected dtype float32, got {}", dtype_name(array))));
    }
    if !array.is_c_contiguous() {
        return Err(InputError::new_err(format!(
            "{name}: expected a C-contiguous array (numpy.ascontiguousarray makes one), got strides {:?}",
            array.strides()
        )));
    }
    obj.extract()
}

pub(crate) fn contiguous<'a, T: Element>(array: &'a PyReadonlyArray2<'_, T>, name: &str) -> PyResult<&'a [T]> {
    array.as_slice().map_err(|_| InputError::new_err(format!("{name}: expected a C-contiguous array")))
}
