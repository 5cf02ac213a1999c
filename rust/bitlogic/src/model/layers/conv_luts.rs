//! Lookup-table convolutions: one n-input table per output channel over the receptive field, shared over the
//! output positions.
//!
//! Tensors: `layers.{i}.leaves` (u32 `[O, n, 3]`, input `j` of table `o` being leaf `[c, dy, dx]` of the receptive
//! field) and `layers.{i}.tables` (u8 `[O, ceil(2^n / 8)]`, packed as the `luts` kind's). Padded inputs read 0.

use safetensors::tensor::Dtype;

use super::conv::{self, Geometry};
use super::luts::{nodes_per_table, table_node, LutLayer};
use crate::bits::{pack_bits, unpack_bits};
use crate::error::{Error, Result};
use crate::ir::{Graph, Signal};
use crate::limits::MAX_ARITY;
use crate::model::stats::Stats;
use crate::tensors::{pack_rows, row_with_padding_bits, unpack_rows, LayerEntry, LayerKeys, TensorBuffers, Tensors};

/// A convolution whose output channel `o` is an n-input lookup table over the receptive field.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLutLayer {
    geometry: Geometry,
    arity: usize,
    leaves: Vec<[u32; 3]>,
    tables: Vec<u64>,
}

impl ConvLutLayer {
    /// The name of the kind in the file format.
    pub(crate) const KIND: &'static str = "conv_luts";

    /// `leaves` is row-major `[O, arity]`; `tables` row-major `[O, ceil(2^arity / 64)]` words, entry `a` of a table
    /// being bit `a % 64` of word `a / 64` (unused high bits 0).
    pub(crate) fn new(geometry: Geometry, arity: usize, leaves: Vec<[u32; 3]>, tables: Vec<u64>) -> Result<Self> {
        check_arity(arity)?;
        let channels = conv::check_leaves("conv_luts", &geometry, &leaves, arity)?;
        let words = LutLayer::words_per_table(arity);
        if tables.len() != channels * words {
            return Err(Error::Network(format!(
                "conv_luts layer: {channels} tables of {} entries need {} words, got {}",
                1usize << arity,
                channels * words,
                tables.len()
            )));
        }
        if let Some(o) = row_with_padding_bits(&tables, 1 << arity) {
            return Err(Error::Network(format!(
                "conv_luts layer: the table of channel {o} has bits set beyond its {} entries",
                1usize << arity
            )));
        }
        Ok(Self { geometry, arity, leaves, tables })
    }
    /// Builds a layer from unpacked tables: `leaves` is row-major `[O, arity]` (leaf `[c, dy, dx]`), `entries`
    /// row-major `[O, 2^arity]` of 0/1 values, entry `a` being the output for the address `a = sum_j x_j 2^j`.
    pub fn from_unpacked(geometry: Geometry, arity: usize, leaves: Vec<[u32; 3]>, entries: &[u8]) -> Result<Self> {
        check_arity(arity)?;
        let channels = conv::check_leaves("conv_luts", &geometry, &leaves, arity)?;
        let expected = channels << arity;
        if entries.len() != expected {
            return Err(Error::Network(format!(
                "conv_luts layer: {channels} tables of {} entries need {expected} entries, got {}",
                1usize << arity,
                entries.len()
            )));
        }
        let tables = pack_bits(entries, 1 << arity, "conv_luts layer tables")?;
        Self::new(geometry, arity, leaves, tables)
    }
    /// The window over the input.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    /// Inputs per table.
    pub fn arity(&self) -> usize {
        self.arity
    }
    /// `O`, the number of tables.
    pub fn out_channels(&self) -> usize {
        self.leaves.len() / self.arity
    }
    /// Row-major `[O, arity]` leaves `[c, dy, dx]`.
    pub fn leaves(&self) -> &[[u32; 3]] {
        &self.leaves
    }
    /// The tables unpacked, row-major `[O, 2^arity]` of 0/1 values.
    pub fn unpacked_tables(&self) -> Vec<u8> {
        unpack_bits(&self.tables, 1 << self.arity)
    }
    /// Output bits, `O*H'*W'`.
    pub fn width(&self) -> usize {
        self.out_channels() * self.geometry.positions()
    }

    pub(crate) fn check_inputs(&self, index: usize, input_width: usize) -> Result<()> {
        self.geometry.check_input_width(Self::KIND, index, input_width)
    }

    /// Reads the layer's tensors; the description gives the geometry, `out_channels` and `arity`.
    pub(crate) fn read(entry: &LayerEntry, tensors: &mut Tensors<'_>) -> Result<Self> {
        let (geometry, channels) = conv::read_geometry(entry, Self::KIND, true, &["arity"])?;
        let arity = entry.keys.arity.unwrap_or(0) as usize;
        if !(1..=MAX_ARITY).contains(&arity) {
            return Err(entry.bad_key("arity", arity, &format!("1..={MAX_ARITY}")));
        }
        let leaves = conv::read_leaves(entry, tensors, channels, arity)?;
        let row_bytes = (1usize << arity).div_ceil(8);
        let packed = tensors.get(&entry.tensor("tables"), Dtype::U8, &[channels, row_bytes])?;
        let tables = unpack_rows(packed, row_bytes, LutLayer::words_per_table(arity));
        Self::new(geometry, arity, leaves, tables)
    }

    /// Appends the layer's tensors; returns its description keys.
    pub(crate) fn write(&self, index: usize, out: &mut TensorBuffers) -> LayerKeys {
        conv::write_leaves(index, &self.leaves, self.arity, out);
        let row_bytes = (1usize << self.arity).div_ceil(8);
        let tables = pack_rows(&self.tables, LutLayer::words_per_table(self.arity), row_bytes);
        let shape = vec![self.out_channels(), row_bytes];
        out.push(crate::tensors::tensor_name(index, "tables"), Dtype::U8, shape, tables);
        LayerKeys {
            arity: Some(self.arity as u32),
            out_channels: Some(self.out_channels() as u32),
            ..self.geometry.keys(true)
        }
    }

    /// The input bits the leaves read at some position.
    pub(crate) fn wires_read(&self) -> Vec<u32> {
        self.geometry.wires_of_leaves(&self.leaves)
    }

    /// Every table at every position: one function node of the table's arity (split later like the `luts` kind's),
    /// padded inputs reading FALSE.
    pub(crate) fn lower(&self, graph: &mut Graph, wire: &impl Fn(u32) -> Signal) -> Vec<Signal> {
        let g = &self.geometry;
        let words = LutLayer::words_per_table(self.arity);
        let mut ins = Vec::with_capacity(self.arity);
        g.unroll(self.out_channels(), |p| {
            (self.leaves.chunks_exact(self.arity).zip(self.tables.chunks_exact(words)))
                .map(|(leaves, packed)| {
                    ins.clear();
                    ins.extend(leaves.iter().map(|&leaf| g.signal(p, g.field_index(leaf), wire)));
                    graph.push(table_node(&ins, packed))
                })
                .collect()
        })
    }

    /// Adds the tables of every position by arity, and the bytes in a file (three u32 per leaf and a packed table
    /// per channel).
    pub(crate) fn add_stats(&self, stats: &mut Stats) {
        *stats.luts.entry(self.arity).or_default() += self.out_channels() * self.geometry.positions();
        stats.bytes += self.out_channels() * (12 * self.arity + (1usize << self.arity).div_ceil(8));
    }

    /// Compiler nodes before optimization: [`nodes_per_table`] per table and position.
    pub(crate) fn node_bound(&self) -> usize {
        self.width().saturating_mul(nodes_per_table(self.arity))
    }
}

fn check_arity(arity: usize) -> Result<()> {
    if !(1..=MAX_ARITY).contains(&arity) {
        return Err(Error::Network(format!("conv_luts layer: arity {arity}, expected 1..={MAX_ARITY}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::conv::testing::{self, layer_outputs};
    use crate::{Layer, SplitMix64};

    #[test]
    fn a_two_input_table_along_a_padded_row() {
        // Row 1 0 1, windows of two columns with one column of padding each side: x0 the left, x1 the right column;
        // the table is x0 AND NOT x1 (entry 1 only).
        let g = Geometry::new([1, 1, 3], [1, 2], [1, 1], [0, 1]).unwrap();
        assert_eq!(g.output_size(), [1, 4]);
        let l = ConvLutLayer::from_unpacked(g, 2, vec![[0, 0, 0], [0, 0, 1]], &[0, 1, 0, 0]).unwrap();
        assert_eq!(l.unpacked_tables(), [0, 1, 0, 0]);
        assert_eq!(layer_outputs(Layer::ConvLuts(l), &[vec![1, 0, 1]]), [[0, 1, 0, 1]]);
    }

    #[test]
    fn random_layers_match_the_plain_model() {
        let mut rng = SplitMix64::new(31);
        for arity in 1..=8 {
            let g = testing::random_geometry(&mut rng, true);
            let channels = 1 + (rng.next_u64() % 3) as usize;
            let leaves = testing::random_leaves(&mut rng, &g, channels * arity);
            let entries: Vec<u8> = (0..channels << arity).map(|_| (rng.next_u64() & 1) as u8).collect();
            let l = ConvLutLayer::from_unpacked(g, arity, leaves.clone(), &entries).unwrap();
            assert_eq!((l.arity(), l.out_channels(), l.leaves()), (arity, channels, &leaves[..]));
            assert_eq!(l.unpacked_tables(), entries);
            let inputs = testing::random_bits(&mut rng, 70, g.input_width());
            let got = layer_outputs(Layer::ConvLuts(l), &inputs);
            let [_, kh, kw] = [0, g.kernel_size()[0], g.kernel_size()[1]];
            for (x, out) in inputs.iter().zip(got) {
                let want = testing::reference(&g, x, |field| {
                    (0..channels)
                        .map(|o| {
                            let address = (leaves[o * arity..(o + 1) * arity].iter().enumerate())
                                .map(|(j, &[c, dy, dx])| {
                                    let k = (c as usize * kh + dy as usize) * kw + dx as usize;
                                    ((field[k] == Some(1)) as usize) << j
                                })
                                .sum::<usize>();
                            entries[(o << arity) + address]
                        })
                        .collect()
                });
                assert_eq!(out, want, "{g:?}, arity {arity}");
            }
        }
    }

    #[test]
    fn bad_tables_are_rejected() {
        let g = Geometry::new([1, 2, 2], [2, 2], [1, 1], [0, 0]).unwrap();
        let message =
            |arity, leaves: Vec<[u32; 3]>, entries: &[u8]| match ConvLutLayer::from_unpacked(g, arity, leaves, entries)
            {
                Err(Error::Network(m)) => m,
                other => panic!("{other:?}"),
            };
        assert!(message(0, vec![], &[]).contains("arity 0, expected 1..=8"));
        assert!(message(9, vec![], &[]).contains("arity 9"));
        assert!(message(2, vec![[0, 0, 0]], &[0; 4]).contains("1 leaves, expected a positive multiple of 2"));
        assert!(message(1, vec![[0, 0, 0]], &[0; 3]).contains("need 2 entries, got 3"));
        assert!(message(1, vec![[0, 0, 0]], &[0, 2]).contains("value 2, expected 0 or 1"));
        assert!(message(1, vec![[0, 2, 0]], &[0, 1]).contains("leaf 0 of channel 0 is [0, 2, 0]"));
        // Packed tables with bits beyond their entries (only a file can hold those).
        let e = ConvLutLayer::new(g, 1, vec![[0, 0, 0]], vec![0b100]).unwrap_err();
        assert!(e.to_string().contains("bits set beyond its 2 entries"), "{e}");
    }
}
