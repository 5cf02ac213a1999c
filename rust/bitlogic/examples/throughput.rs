//! Samples per second of a random 784-input network of 6 x 8000 gates from bool input, per instruction set, with
//! the optimizing passes on and off, and the time the passes take.
//!
//! `cargo run --release --example throughput [-- SAMPLES THREADS [ISA]]`
use std::time::Instant;

use bitlogic::{random_network, EvalOptions, Input, Isa, LayerKind, Matrix, Packed, SplitMix64};

const INPUTS: usize = 784;

fn main() -> bitlogic::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let samples = args.first().copied().unwrap_or(200_000);
    let threads = args.get(1).copied().unwrap_or(1);
    let only = std::env::args().nth(3).map(|name| Isa::from_name(&name)).transpose()?;
    let net = random_network(INPUTS, &[8000; 6], 10, LayerKind::Gates, 0)?;
    let start = Instant::now();
    net.prepare()?;
    println!("optimized in {:.3} s: {:?}", start.elapsed().as_secs_f64(), net.optimization()?);
    let mut rng = SplitMix64::new(1);
    let bits: Vec<u8> = (0..samples * INPUTS).map(|_| (rng.next_u64() & 1) as u8).collect();
    let input = Input::Bits(Matrix::c_order(&bits, samples, INPUTS)?);
    for optimize in [true, false] {
        for isa in Isa::supported().into_iter().filter(|&isa| only.is_none_or(|o| o == isa)) {
            let options = EvalOptions { threads: Some(threads), isa: Some(isa), optimize };
            let (seconds, labels) = best_of(|| net.predict(input, &options))?;
            println!(
                "{:>8}{}: {:>6.2} M samples/s ({samples} samples, {threads} thread(s), first label {})",
                isa.name(),
                if optimize { "" } else { " (not optimized)" },
                samples as f64 / seconds / 1e6,
                labels[0]
            );
        }
    }
    // The same samples as bit planes: no encoding at all.
    let words = samples.div_ceil(64);
    let mut planes = vec![0u64; INPUTS * words];
    for (s, row) in bits.chunks_exact(INPUTS).enumerate() {
        for (i, &b) in row.iter().enumerate() {
            planes[i * words + s / 64] |= (b as u64) << (s % 64);
        }
    }
    let packed = Input::Packed(Packed::new(&planes, INPUTS, samples)?);
    for isa in Isa::supported().into_iter().filter(|&isa| only.is_none_or(|o| o == isa)) {
        let options = EvalOptions { threads: Some(threads), isa: Some(isa), optimize: true };
        let (seconds, labels) = best_of(|| net.predict(packed, &options))?;
        println!(
            "{:>8} (packed input): {:>6.2} M samples/s (first label {})",
            isa.name(),
            samples as f64 / seconds / 1e6,
            labels[0]
        );
    }
    Ok(())
}

/// The shortest of five timed runs after a warm-up (this kind of machine is shared: single runs vary by tens of
/// per cent), and the labels of the last run.
fn best_of(run: impl Fn() -> bitlogic::Result<Vec<i64>>) -> bitlogic::Result<(f64, Vec<i64>)> {
    let mut labels = run()?;
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        labels = run()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok((best, labels))
}
