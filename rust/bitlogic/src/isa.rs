//! The instruction-set paths of the evaluator: which exist, which this CPU runs, and which is chosen by default
//! (`BITLOGIC_ISA` forces one for testing and comparison).

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// An instruction-set path of the evaluator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain Rust compiled for the crate's baseline target (SSE2 intrinsics on x86-64, the compiler's own
    /// vectorization on aarch64).
    Portable,
    /// aarch64 with NEON (Advanced SIMD) intrinsics.
    Neon,
    /// x86-64 with AVX2, BMI2 and POPCNT.
    Avx2,
    /// x86-64 with AVX-512 (F, BW, VL, VPOPCNTDQ).
    Avx512,
}

impl Isa {
    /// Every path, slowest first within each architecture.
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// The name used by `BITLOGIC_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a name of [`Isa::name`].
    pub fn from_name(name: &str) -> Result<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name.trim().to_ascii_lowercase()).ok_or_else(|| {
            let names: Vec<&str> = Isa::ALL.iter().map(|isa| isa.name()).collect();
            Error::Setting(format!("unknown instruction set {name:?}; expected one of {}", names.join(", ")))
        })
    }

    /// Whether this CPU can run the path.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("bmi2")
                    && is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vpopcntdq")
                    && is_x86_feature_detected!("popcnt")
            }
            // The other architectures' paths.
            _ => false,
        }
    }

    /// The paths this CPU supports.
    pub fn supported() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.is_supported()).collect()
    }

    /// The path used when none is asked for: `BITLOGIC_ISA` if set, else the fastest supported one.
    pub fn default_for_machine() -> Result<Isa> {
        static CHOSEN: OnceLock<std::result::Result<Isa, String>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| match std::env::var("BITLOGIC_ISA") {
                Ok(name) => Isa::from_name(&name).and_then(Isa::check).map_err(|e| format!("BITLOGIC_ISA: {e}")),
                Err(_) => Ok(*Isa::supported().last().unwrap_or(&Isa::Portable)),
            })
            .clone()
            .map_err(Error::Setting)
    }

    pub(crate) fn check(self) -> Result<Isa> {
        if self.is_supported() {
            Ok(self)
        } else {
            Err(Error::Setting(format!("this CPU does not support the {} instruction set", self.name())))
        }
    }
}
