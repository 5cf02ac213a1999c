//! Assembling the bytes of a network file: the header (tensor entries and metadata, with the digest of the data) and
//! the data buffer (FORMAT.md sections 1, 2 and 5).

use safetensors::tensor::Dtype;
use serde_json::{json, Map, Value};

use super::metadata::{digest, DIGEST_KEY};
use crate::error::{Error, Result};

/// The container holding `tensors` (name, dtype, shape, little-endian bytes) and `metadata`, to which the digest of
/// the data is added. Tensors of 4-byte dtypes come first, then the bytes, each group by name, and the header is
/// padded with spaces to a multiple of 8 bytes: every tensor then starts at a multiple of its element size, as in
/// files of the safetensors library, so a reader may map the file and view the tensors in place.
pub(super) fn container(
    mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    mut metadata: Map<String, Value>,
) -> Result<Vec<u8>> {
    tensors.sort_by(|a, b| b.1.bitsize().cmp(&a.1.bitsize()).then_with(|| a.0.cmp(&b.0)));
    let mut header = Map::new();
    let mut offset = 0;
    for (name, dtype, shape, bytes) in &tensors {
        let bits = shape.iter().try_fold(dtype.bitsize(), |n, &d| n.checked_mul(d));
        if bits.map(|b| b.div_ceil(8)) != Some(bytes.len()) {
            return Err(Error::Format(format!(
                "tensor {name}: {} bytes for shape {shape:?} of {dtype:?}",
                bytes.len()
            )));
        }
        let end = offset + bytes.len();
        header.insert(name.clone(), json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    metadata.insert(DIGEST_KEY.into(), Value::String(digest(tensors.iter().map(|t| t.3.as_slice()))));
    header.insert("__metadata__".into(), Value::Object(metadata));
    let mut text =
        serde_json::to_vec(&header).map_err(|e| Error::Format(format!("cannot serialize the header: {e}")))?;
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + text.len() + offset);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    for (.., bytes) in &tensors {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}
