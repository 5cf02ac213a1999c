//! Tests of the crate through its public API that involve several of its parts at once (so they live above every
//! module of the chain, and nothing depends on them).

use crate::{random_network, EvalOptions, Input, LayerKind, Matrix, Network, ProgramStep, ProgramView, SplitMix64};

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

/// Sixteen threads save different networks to one path, twenty times each, while two threads load it: every load
/// gives one of the saved networks, whole.
#[test]
fn concurrent_saves_of_one_path_always_leave_a_whole_network() {
    const WRITERS: usize = 16;
    const SAVES: usize = 20;
    let dir = std::env::temp_dir().join(format!("bitlogic-concurrent-saves-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.bitlogic");
    // Networks of different sizes, so that a mix of two files or a truncated one cannot pass for a valid file.
    let network = |writer: usize, save: usize| {
        let seed = (writer * SAVES + save) as u64;
        let widths = [8 + 4 * (seed as usize % 7), 6];
        let net = random_network(10, &widths, 2, LayerKind::Gates, seed).unwrap();
        net.with_info([("seed".to_string(), seed.to_string())].into())
    };
    network(0, 0).save(&path).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let loads = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut loads = 0;
                    while !done.load(std::sync::atomic::Ordering::Acquire) {
                        let net = Network::load(&path);
                        if net.is_err() {
                            done.store(true, std::sync::atomic::Ordering::Release);
                        }
                        let net = net.expect("every load reads a whole network file");
                        let seed: usize = net.info()["seed"].parse().unwrap();
                        assert_eq!(net, network(seed / SAVES, seed % SAVES), "a mixed file");
                        loads += 1;
                    }
                    loads
                })
            })
            .collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let path = &path;
                scope.spawn(move || (0..SAVES).for_each(|s| network(w, s).save(path).unwrap()))
            })
            .collect();
        // The readers are stopped before any failure is reported, so that a failing writer cannot leave them
        // running forever.
        let written: Vec<_> = writers.into_iter().map(|w| w.join()).collect();
        done.store(true, std::sync::atomic::Ordering::Release);
        let loads = readers.into_iter().map(|r| r.join().unwrap()).sum::<usize>();
        written.into_iter().for_each(|w| w.unwrap());
        loads
    });
    assert!(loads > 0);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["net.bitlogic"], "temporary files left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}
