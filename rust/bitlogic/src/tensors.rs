//! The tensor side of network files, shared by the container (`format`) and the layer kinds (`model`): typed
//! lookup of the tensors a description names, the buffers a writer collects, the bit-row packing of tables and
//! weights, and the check of which optional description keys a kind takes.
//!
//! A leaf module: it knows tensors and names, not networks, so each layer kind can read and write its own tensors
//! without the model depending on the container.

use safetensors::tensor::{Dtype, Metadata};

use crate::error::{Error, Result};

/// Looks up tensors by name, checking dtype and shape, and counts how many were used.
pub(crate) struct Tensors<'a> {
    pub(crate) header: &'a Metadata,
    pub(crate) data: &'a [u8],
    pub(crate) used: usize,
}

impl<'a> Tensors<'a> {
    /// The bytes of tensor `name`, which must have `dtype` and `shape`.
    pub(crate) fn get(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&'a [u8]> {
        let info = self.header.info(name).ok_or_else(|| Error::Format(format!("tensor `{name}` is missing")))?;
        if info.dtype != dtype {
            return Err(Error::Format(format!("tensor `{name}` has dtype {:?}, expected {dtype:?}", info.dtype)));
        }
        if info.shape != shape {
            return Err(Error::Format(format!("tensor `{name}` has shape {:?}, expected {shape:?}", info.shape)));
        }
        self.used += 1;
        let (begin, end) = info.data_offsets;
        Ok(&self.data[begin..end])
    }
}

/// The tensors a writer collects: name, dtype, shape and little-endian bytes of each, in order.
#[derive(Default)]
pub(crate) struct TensorBuffers(pub(crate) Vec<(String, Dtype, Vec<usize>, Vec<u8>)>);

impl TensorBuffers {
    pub(crate) fn push(&mut self, name: String, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) {
        self.0.push((name, dtype, shape, bytes));
    }
}

/// What the description says of layer `index`, as its kind's reader needs it.
pub(crate) struct LayerEntry {
    /// Position of the layer.
    pub(crate) index: usize,
    /// `width` of the description.
    pub(crate) width: usize,
    /// `arity` of the description, when present.
    pub(crate) arity: Option<u32>,
    /// Width of the layer's input (the layer before it, or the encoder).
    pub(crate) input_width: usize,
}

impl LayerEntry {
    /// The name of the layer's tensor `suffix`: `layers.{index}.{suffix}`.
    pub(crate) fn tensor(&self, suffix: &str) -> String {
        tensor_name(self.index, suffix)
    }

    /// Checks that `arity` is present exactly when the kind takes it.
    pub(crate) fn check_arity_key(&self, kind: &str, takes_arity: bool) -> Result<()> {
        let required: &[&str] = if takes_arity { &["arity"] } else { &[] };
        check_keys(&format!("`layers[{}]`", self.index), kind, &[("arity", self.arity.is_some())], required)
    }
}

/// The name of tensor `suffix` of layer `index`.
pub(crate) fn tensor_name(index: usize, suffix: &str) -> String {
    format!("layers.{index}.{suffix}")
}

/// Which optional keys a kind requires; every other optional key must be absent.
pub(crate) fn check_keys(what: &str, kind: &str, present: &[(&str, bool)], required: &[&str]) -> Result<()> {
    for (key, is_present) in present {
        let needed = required.contains(key);
        if needed && !is_present {
            return Err(Error::Format(format!("network description: {what} of kind {kind:?} needs the key `{key}`")));
        }
        if !needed && *is_present {
            return Err(Error::Format(format!(
                "network description: {what} of kind {kind:?} does not take the key `{key}`"
            )));
        }
    }
    Ok(())
}

/// Little-endian values of `N` bytes each.
pub(crate) fn le_values<T, const N: usize>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes.chunks_exact(N).map(|c| from(c.try_into().expect("chunks_exact yields N bytes"))).collect()
}

/// Bit-packed rows of `row_bytes` little-endian bytes into rows of `words` u64 words.
pub(crate) fn unpack_rows(bytes: &[u8], row_bytes: usize, words: usize) -> Vec<u64> {
    let rows = bytes.len().checked_div(row_bytes).unwrap_or(0);
    let mut out = vec![0u64; rows * words];
    for (row, dst) in bytes.chunks_exact(row_bytes).zip(out.chunks_exact_mut(words)) {
        for (b, &byte) in row.iter().enumerate() {
            dst[b / 8] |= (byte as u64) << (8 * (b % 8));
        }
    }
    out
}

/// The inverse of [`unpack_rows`].
pub(crate) fn pack_rows(words: &[u64], words_per_row: usize, row_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() / words_per_row.max(1) * row_bytes);
    for row in words.chunks_exact(words_per_row) {
        out.extend((0..row_bytes).map(|b| (row[b / 8] >> (8 * (b % 8))) as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips() {
        let words = vec![0x0123_4567_89ab_cdef_u64, 0x0000_0000_0000_00ff, 0xdead_beef, 0x1];
        let packed = pack_rows(&words, 2, 9);
        assert_eq!(packed.len(), 18);
        assert_eq!(packed[0], 0xef);
        assert_eq!(packed[8], 0xff);
        let back = unpack_rows(&packed, 9, 2);
        assert_eq!(back, words);
    }
}
