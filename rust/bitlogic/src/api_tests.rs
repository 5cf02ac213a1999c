//! Tests of the crate through its public API that involve several of its parts at once (so they live above every
//! module of the chain, and nothing depends on them).

use crate::{random_network, EvalOptions, Input, LayerKind, Matrix, ProgramStep, ProgramView, SplitMix64};

/// Scores of every sample by a plain scalar interpreter of `view`: one `bool` per slot, one sample at a time.
fn interpret(view: &ProgramView<'_>, bits: &[u8], num_bits: usize) -> Vec<i32> {
    let mut scores = Vec::new();
    for sample in bits.chunks_exact(num_bits) {
        let mut slots = vec![false; view.num_slots()];
        for (slot, &bit) in view.input_bits().iter().enumerate() {
            slots[slot] = sample[bit as usize] == 1;
        }
        slots[view.false_slot()] = false;
        slots[view.true_slot()] = true;
        for step in view.steps() {
            match step {
                ProgramStep::Ops { imm, ops, .. } => {
                    for &[a, b, c, out] in ops {
                        let address =
                            slots[a as usize] as u8 | (slots[b as usize] as u8) << 1 | (slots[c as usize] as u8) << 2;
                        slots[out as usize] = (imm >> address) & 1 == 1;
                    }
                }
                ProgramStep::Binary(b) => {
                    let words = b.words_per_row();
                    let values: Vec<bool> = b.inputs.iter().map(|&s| slots[s as usize]).collect();
                    for ((row, &threshold), &out) in b.weights.chunks_exact(words).zip(b.thresholds).zip(b.outputs) {
                        let matches = (values.iter().enumerate())
                            .filter(|&(j, &v)| v == ((row[j / 64] >> (j % 64)) & 1 == 1))
                            .count() as i64;
                        slots[out as usize] = matches >= threshold as i64;
                    }
                }
            }
        }
        for class in view.classes() {
            let ones = class.slots.iter().filter(|&&s| slots[s as usize]).count();
            let zeros = class.inverted.iter().filter(|&&s| !slots[s as usize]).count();
            scores.push((ones + zeros) as i32 + class.ones as i32);
        }
    }
    scores
}

#[test]
fn program_view_interpreted_gives_the_engine_scores() {
    let kinds = [LayerKind::Gates, LayerKind::Luts { arity: 2 }, LayerKind::Luts { arity: 6 }, LayerKind::Binary];
    let mut rng = SplitMix64::new(5);
    for (seed, kind) in kinds.into_iter().enumerate() {
        let net = random_network(24, &[60, 40, 30], 3, kind, seed as u64).unwrap();
        let rows = 200;
        let bits: Vec<u8> = (0..rows * 24).map(|_| (rng.next_u64() & 1) as u8).collect();
        let input = Input::Bits(Matrix::c_order(&bits, rows, 24).unwrap());
        for optimize in [true, false] {
            let view = net.program(optimize).unwrap();
            let sizes = net.optimization().unwrap();
            assert_eq!(view.stats(), if optimize { &sizes.after } else { &sizes.before });
            let expected = net.scores(input, &EvalOptions { optimize, ..Default::default() }).unwrap();
            assert_eq!(interpret(&view, &bits, 24), expected, "{kind:?}, optimize {optimize}");
        }
    }
}
