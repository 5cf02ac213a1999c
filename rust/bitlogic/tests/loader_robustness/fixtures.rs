//! What the targeted tests share: a small template network of every kind, its file, and the framing helpers.

use bitlogic::{BitOrder, Error, Network};
use serde_json::Value;

use crate::common::*;

/// The header length, header text and data buffer of a file, when its framing is intact.
pub(crate) fn frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    Some((header, &bytes[8 + n..]))
}

/// Replaces the header of a framed file, writing the new length (or keeping the old one).
pub(crate) fn reframe(bytes: &[u8], header: &[u8], keep_length: bool) -> Vec<u8> {
    let (old, data) = frame(bytes).expect("framed");
    let mut out = assemble(header, data);
    if keep_length {
        out[..8].copy_from_slice(&(old.len() as u64).to_le_bytes());
    }
    out
}

/// A small network using every layer kind: thresholds encoder (3 features x 2), gates (8), LUTs of arity 2 (6,
/// so the single table byte has 4 padding bits), binary (4 outputs of 6 inputs, 2 padding bits), 2 classes.
pub(crate) fn template() -> RefNet {
    RefNet {
        encoder: RefEncoder::Thresholds {
            order: BitOrder::FeatureMajor,
            thresholds: vec![vec![0.0, 1.0], vec![-1.0, f32::INFINITY], vec![0.5, 0.5]],
        },
        layers: vec![
            RefLayer::Gates(RefGates {
                gates: (0..8).map(|g| RefGate { a: g % 6, b: (g + 1) % 6, op: g as u8 + 3 }).collect(),
            }),
            RefLayer::Luts(RefLuts {
                arity: 2,
                luts: (0..6)
                    .map(|l| RefLut { wires: vec![l, 7 - l], entries: vec![l % 2 == 0, true, false, l % 3 == 0] })
                    .collect(),
            }),
            RefLayer::Binary(RefBinary {
                inputs: 6,
                neurons: (0..4)
                    .map(|o| RefNeuron { weights: (0..6).map(|j| (j + o) % 3 == 0).collect(), threshold: o + 1 })
                    .collect(),
            }),
        ],
        num_classes: 2,
        tau: 2.0,
        info: Default::default(),
        pack_here: false,
    }
}

/// The template's description and tensors, for editing.
pub(crate) fn parts() -> (Value, Vec<RawTensor>) {
    template().file_parts()
}

pub(crate) fn file(description: &Value, tensors: &[RawTensor]) -> Vec<u8> {
    write_container(&standard_metadata(description), tensors)
}

pub(crate) fn tensor<'a>(tensors: &'a mut [RawTensor], name: &str) -> &'a mut RawTensor {
    tensors.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
}

/// Loads `bytes`, expecting a format error whose message contains every one of `needles`.
#[track_caller]
pub(crate) fn expect_format(bytes: &[u8], needles: &[&str]) -> String {
    match Network::from_bytes(bytes) {
        Err(Error::Format(message)) => {
            for needle in needles {
                assert!(message.contains(needle), "the message should name {needle:?}: {message}");
            }
            message
        }
        other => panic!("expected a format error naming {needles:?}, got {other:?}"),
    }
}
