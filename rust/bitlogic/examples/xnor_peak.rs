//! This core's XNOR-popcount peak: the bit comparisons per second of a tight loop that XORs 64-bit words against a
//! weight word and adds their popcounts into 64 counters, on data that stays in the L1 cache. It is the same loop
//! shape as the engine's binary step (64 samples' words against one weight word), so a binary layer's measured rate
//! divided by this one says how much of the machine the layer uses; `benches/conv.py` prints that fraction.
//!
//! `cargo run --release -p bitlogic --example xnor_peak` prints one line per instruction-set path the CPU supports:
//! `<isa> <bit comparisons per second>`.

use std::hint::black_box;
use std::time::Instant;

/// Words per column: a 64-sample column of 16 input words (1 024 inputs), 8 KiB of rows, in L1.
const WORDS: usize = 16;

/// 64 samples' input words per column, the weight words, the 64 mismatch counters.
type Kernel = dyn Fn(&[[u64; 64]; WORDS], &[u64; WORDS], &mut [u64; 64]);

#[inline(always)]
fn mismatches(rows: &[[u64; 64]; WORDS], weights: &[u64; WORDS], out: &mut [u64; 64]) {
    for (column, &weight) in rows.iter().zip(weights) {
        for (m, &x) in out.iter_mut().zip(column) {
            *m += (x ^ weight).count_ones() as u64;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn mismatches_avx2(rows: &[[u64; 64]; WORDS], weights: &[u64; WORDS], out: &mut [u64; 64]) {
    mismatches(rows, weights, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt")]
fn mismatches_avx512(rows: &[[u64; 64]; WORDS], weights: &[u64; WORDS], out: &mut [u64; 64]) {
    mismatches(rows, weights, out)
}

/// Bit comparisons per second of `kernel`, the best of five runs of about 0.2 s.
fn rate(kernel: &Kernel) -> f64 {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut rows = [[0u64; 64]; WORDS];
    rows.iter_mut().flatten().for_each(|w| *w = next());
    let weights: [u64; WORDS] = std::array::from_fn(|_| next());
    let mut best = 0.0f64;
    for _ in 0..5 {
        let mut out = [0u64; 64];
        let reps = 200_000;
        let start = Instant::now();
        for _ in 0..reps {
            kernel(black_box(&rows), black_box(&weights), &mut out);
        }
        black_box(&out);
        let bits = (reps * WORDS * 64 * 64) as f64;
        best = best.max(bits / start.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    println!("portable {:.4e}", rate(&mismatches));
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt") {
            // SAFETY: the features the function is compiled for were detected just above.
            println!("avx2 {:.4e}", rate(&|r, w, o| unsafe { mismatches_avx2(r, w, o) }));
        }
        if is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vpopcntdq")
        {
            // SAFETY: as above.
            println!("avx512 {:.4e}", rate(&|r, w, o| unsafe { mismatches_avx512(r, w, o) }));
        }
    }
}
