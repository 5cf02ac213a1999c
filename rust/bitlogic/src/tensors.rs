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

/// The keys of a layer description that only some kinds take (FORMAT.md section 3): what a kind's writer returns
/// and what its reader finds. `None` is an absent key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LayerKeys {
    /// `luts`, `conv_luts`: inputs per table.
    pub(crate) arity: Option<u32>,
    /// `conv_gates`: levels of each tree.
    pub(crate) depth: Option<u32>,
    /// Spatial kinds: `[C, H, W]` of the input.
    pub(crate) input_shape: Option<[u32; 3]>,
    /// Spatial kinds: `[kh, kw]`.
    pub(crate) kernel_size: Option<[u32; 2]>,
    /// Spatial kinds: `[sh, sw]`.
    pub(crate) stride: Option<[u32; 2]>,
    /// Convolutions: `[ph, pw]`.
    pub(crate) padding: Option<[u32; 2]>,
    /// Convolutions: the number of output channels.
    pub(crate) out_channels: Option<u32>,
    /// `conv_binary`: the value (0 or 1) a padded input adds to the dot product.
    pub(crate) pad_value: Option<u32>,
}

impl LayerKeys {
    /// The keys by name, each with whether it is present.
    fn presence(&self) -> [(&'static str, bool); 8] {
        [
            ("arity", self.arity.is_some()),
            ("depth", self.depth.is_some()),
            ("input_shape", self.input_shape.is_some()),
            ("kernel_size", self.kernel_size.is_some()),
            ("stride", self.stride.is_some()),
            ("padding", self.padding.is_some()),
            ("out_channels", self.out_channels.is_some()),
            ("pad_value", self.pad_value.is_some()),
        ]
    }
}

/// What the description says of layer `index`, as its kind's reader needs it.
pub(crate) struct LayerEntry {
    /// Position of the layer.
    pub(crate) index: usize,
    /// `width` of the description.
    pub(crate) width: usize,
    /// The keys only some kinds take.
    pub(crate) keys: LayerKeys,
    /// Width of the layer's input (the layer before it, or the encoder).
    pub(crate) input_width: usize,
}

impl LayerEntry {
    /// The name of the layer's tensor `suffix`: `layers.{index}.{suffix}`.
    pub(crate) fn tensor(&self, suffix: &str) -> String {
        tensor_name(self.index, suffix)
    }

    /// Checks that exactly the optional keys in `required` are present, for a layer of kind `kind`.
    pub(crate) fn check_keys_of(&self, kind: &str, required: &[&str]) -> Result<()> {
        check_keys(&format!("`layers[{}]`", self.index), kind, &self.keys.presence(), required)
    }

    /// A format error naming key `key` of this layer: `value`, and what was `expected`.
    pub(crate) fn bad_key(&self, key: &str, value: impl std::fmt::Debug, expected: &str) -> Error {
        Error::Format(format!("network description: `layers[{}].{key}` is {value:?}, expected {expected}", self.index))
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

/// The first row of `words` (rows of `ceil(row_len / 64)` words) with a bit set at or beyond bit `row_len`: padding
/// bits of packed rows read from a file must be 0.
pub(crate) fn row_with_padding_bits(words: &[u64], row_len: usize) -> Option<usize> {
    if row_len.is_multiple_of(64) {
        return None;
    }
    let per_row = row_len.div_ceil(64);
    let unused = !0u64 << (row_len % 64);
    words.chunks_exact(per_row).position(|row| row[per_row - 1] & unused != 0)
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
