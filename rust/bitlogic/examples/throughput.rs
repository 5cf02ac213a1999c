//! Samples per second of a random 784-input network of 6 x 8000 gates from bool input, per instruction set.
//!
//! `cargo run --release --example throughput [-- SAMPLES THREADS]`
use std::time::Instant;

use bitlogic::{random_network, EvalOptions, Input, Isa, LayerKind, Matrix, SplitMix64};

fn main() -> bitlogic::Result<()> {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let samples = args.first().copied().unwrap_or(200_000);
    let threads = args.get(1).copied().unwrap_or(1);
    let net = random_network(784, &[8000; 6], 10, LayerKind::Gates, 0)?;
    let mut rng = SplitMix64::new(1);
    let bits: Vec<u8> = (0..samples * 784).map(|_| (rng.next_u64() & 1) as u8).collect();
    let input = Input::Bits(Matrix::c_order(&bits, samples, 784)?);
    for isa in Isa::supported() {
        let options = EvalOptions { threads: Some(threads), isa: Some(isa) };
        net.predict(input, &options)?; // warm up
        let start = Instant::now();
        let labels = net.predict(input, &options)?;
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "{:>8}: {:>6.2} M samples/s ({samples} samples, {threads} thread(s), first label {})",
            isa.name(),
            samples as f64 / seconds / 1e6,
            labels[0]
        );
    }
    Ok(())
}
