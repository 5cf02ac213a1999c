//! Criterion benchmarks of the engine: one thread, every supported instruction-set path side by side, on random
//! networks of each layer family, from bit input, with the optimizing passes on and off; and the time the passes take
//! on a network of 1 M gates. `cargo bench -p bitlogic`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use bitlogic::{random_network, EvalOptions, Input, Isa, LayerKind, Matrix, Network, SplitMix64};

fn families(c: &mut Criterion) {
    const SAMPLES: usize = 8192;
    let networks = [
        ("gates 6x8000", random_network(784, &[8000; 6], 10, LayerKind::Gates, 0)),
        ("luts6 4x2000", random_network(784, &[2000; 4], 10, LayerKind::Luts { arity: 6 }, 0)),
        ("binary 2x1000", random_network(784, &[1000, 1000], 10, LayerKind::Binary, 0)),
    ];
    let mut rng = SplitMix64::new(1);
    let bits: Vec<u8> = (0..SAMPLES * 784).map(|_| (rng.next_u64() & 1) as u8).collect();
    let input = Input::Bits(Matrix::c_order(&bits, SAMPLES, 784).expect("shape matches"));
    let mut group = c.benchmark_group("predict");
    group.throughput(Throughput::Elements(SAMPLES as u64));
    group.sample_size(10);
    for (name, net) in &networks {
        let net = net.as_ref().expect("valid random network");
        for isa in Isa::supported() {
            for optimize in [true, false] {
                let options = EvalOptions { threads: Some(1), isa: Some(isa), optimize };
                let path = format!("{}{}", isa.name(), if optimize { "" } else { ", optimization off" });
                group.bench_with_input(BenchmarkId::new(*name, path), &options, |b, options| {
                    b.iter(|| net.predict(input, options).expect("evaluation succeeds"))
                });
            }
        }
    }
    group.finish();
}

fn passes(c: &mut Criterion) {
    let bytes = random_network(784, &[200_000; 5], 10, LayerKind::Gates, 0).expect("valid").to_bytes().expect("fits");
    let mut group = c.benchmark_group("load and optimize");
    group.sample_size(10);
    group.bench_function("1 M gates", |b| {
        b.iter(|| {
            let net = Network::from_bytes(&bytes).expect("valid file");
            net.prepare().expect("compiles");
            net
        })
    });
    group.finish();
}

criterion_group!(benches, families, passes);
criterion_main!(benches);
