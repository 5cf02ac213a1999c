//! An independent writer of network files: the safetensors container assembled byte by byte from FORMAT.md, so
//! the engine's reader is checked against files it did not write.

use bitlogic::BitOrder;
use serde_json::{json, Value};

use super::{RefEncoder, RefNet};

/// One tensor of a container: name, dtype name, shape, little-endian data.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn new(name: impl Into<String>, dtype: &'static str, shape: Vec<usize>, data: Vec<u8>) -> Self {
        RawTensor { name: name.into(), dtype, shape, data }
    }
}

/// Packs a row of bits into bytes: bit `j` is bit `j % 8` of byte `j / 8`, padding zero.
pub fn pack_bytes(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (j, &b) in bits.iter().enumerate() {
        if b {
            out[j / 8] |= 1 << (j % 8);
        }
    }
    out
}

/// Values as little-endian `u32`s.
pub fn le_u32(values: impl IntoIterator<Item = usize>) -> Vec<u8> {
    values.into_iter().flat_map(|v| (v as u32).to_le_bytes()).collect()
}

impl RefNet {
    /// The description and tensors of the network file, written from FORMAT.md sections 3 and 5.
    pub fn file_parts(&self) -> (Value, Vec<RawTensor>) {
        let mut tensors = Vec::new();
        let encoder = match &self.encoder {
            RefEncoder::Bits(n) => json!({"kind": "bits", "num_inputs": n}),
            RefEncoder::Thresholds { order, thresholds } => {
                let (f, t) = (thresholds.len(), thresholds[0].len());
                let data = thresholds.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
                tensors.push(RawTensor::new("encoder.thresholds", "F32", vec![f, t], data));
                let order = match order {
                    BitOrder::FeatureMajor => "feature_major",
                    BitOrder::ThresholdMajor => "threshold_major",
                };
                json!({"kind": "thresholds", "num_features": f, "thresholds_per_feature": t, "bit_order": order})
            }
        };
        let mut layers = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut entry = serde_json::Map::new();
            entry.insert("kind".into(), json!(layer.kind()));
            entry.insert("width".into(), json!(layer.width()));
            entry.extend(layer.model().write(&format!("layers.{i}"), &mut tensors));
            entry.insert("sources".into(), json!([i]));
            layers.push(Value::Object(entry));
        }
        let mut description = json!({
            "encoder": encoder,
            "layers": layers,
            "head": {"kind": "group_sum", "num_classes": self.num_classes, "tau": self.tau},
        });
        if !self.info.is_empty() {
            description["info"] = json!(self.info);
        }
        (description, tensors)
    }

    /// The network file, from the independent writer, of version 1.0 (no digest).
    pub fn file_bytes(&self) -> Vec<u8> {
        let (description, tensors) = self.file_parts();
        write_container(&standard_metadata(&description), &tensors)
    }

    /// The network file, from the independent writer, of version 1.1 (with the digest of its data).
    pub fn file_bytes_v1_1(&self) -> Vec<u8> {
        self.file_bytes_with_digest("1.1")
    }

    /// The network file, from the independent writer, of version 1.2 (the first with the spatial kinds).
    pub fn file_bytes_v1_2(&self) -> Vec<u8> {
        self.file_bytes_with_digest("1.2")
    }

    /// The network file of a version with the digest of its data (1.1 and later).
    fn file_bytes_with_digest(&self, version: &str) -> Vec<u8> {
        let (description, tensors) = self.file_parts();
        let mut metadata = standard_metadata(&description);
        metadata["format_version"] = json!(version);
        write_container(&with_digest(metadata, &tensors), &tensors)
    }

    /// Whether a layer is of a spatial kind, which files of format 1.2 and later hold.
    pub fn has_spatial_layers(&self) -> bool {
        self.layers.iter().any(|l| l.output_shape().is_some())
    }
}

/// The SHA-256 of `data` in lowercase hexadecimal, as the metadata key `data_sha256` records it (FORMAT.md 2).
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// `metadata` with `data_sha256` set to the digest of the data buffer [`write_container`] makes of `tensors`.
pub fn with_digest(mut metadata: Value, tensors: &[RawTensor]) -> Value {
    let data: Vec<u8> = tensors.iter().flat_map(|t| t.data.iter().copied()).collect();
    metadata["data_sha256"] = json!(sha256_hex(&data));
    metadata
}

/// The `__metadata__` object of a version 1.0 file holding `description`.
pub fn standard_metadata(description: &Value) -> Value {
    json!({"format": "bitlogic", "format_version": "1.0", "network": description.to_string()})
}

/// A safetensors container with `metadata` (any JSON value, or `Value::Null` to leave `__metadata__` out) and the
/// tensors laid out in the given order.
pub fn write_container(metadata: &Value, tensors: &[RawTensor]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_null() {
        header.insert("__metadata__".into(), metadata.clone());
    }
    let mut offset = 0;
    for t in tensors {
        let end = offset + t.data.len();
        header.insert(t.name.clone(), json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let data: Vec<u8> = tensors.iter().flat_map(|t| t.data.iter().copied()).collect();
    assemble(Value::Object(header).to_string().as_bytes(), &data)
}

/// Length prefix, header and data buffer.
pub fn assemble(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend((header.len() as u64).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// Splits a container into its header text and data buffer (for well-formed input).
pub fn split_container(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).expect("the header is JSON");
    (header, bytes[8 + n..].to_vec())
}
