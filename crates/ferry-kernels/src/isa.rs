//! The instruction-set level kernels use, detected once at run time (one binary runs everywhere).

use std::sync::OnceLock;

/// Ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    Generic,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512F (plus AVX2 and FMA, which every AVX-512 CPU has).
    Avx512,
}

/// The best level this CPU supports, capped by `FERRY_KERNELS_ISA=generic|avx2` (so the fallbacks
/// can be tested and compared on a machine that has more).
pub(crate) fn isa() -> Isa {
    static CHOICE: OnceLock<Isa> = OnceLock::new();
    *CHOICE.get_or_init(|| {
        let cap = match std::env::var("FERRY_KERNELS_ISA").as_deref() {
            Ok("generic") => Isa::Generic,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        detected().min(cap)
    })
}

/// Every level this CPU can run, best first (tests run each).
#[cfg(test)]
pub(crate) fn available() -> Vec<Isa> {
    [Isa::Avx512, Isa::Avx2, Isa::Generic].into_iter().filter(|&l| l <= detected()).collect()
}

fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx2") && has!("fma") {
            return Isa::Avx512;
        }
        if has!("avx2") && has!("fma") {
            return Isa::Avx2;
        }
    }
    Isa::Generic
}

/// Defines `fn NAME(args)` that runs `body` compiled for the best available [`Isa`] (the same
/// portable code, which the compiler vectorizes for each level), and `fn NAME_with(isa, args)` that
/// runs a given level (tests cover every level this way).
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident / $with:ident ($($a:ident: $t:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) {
            $with($crate::isa::isa(), $($a),*)
        }

        #[allow(dead_code)]
        $vis fn $with(level: $crate::isa::Isa, $($a: $t),*) {
            #[inline(always)]
            fn inner($($a: $t),*) $body

            /// # Safety
            /// The CPU must support AVX-512F, AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($a: $t),*) {
                inner($($a),*)
            }

            /// # Safety
            /// The CPU must support AVX2 and FMA.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($a: $t),*) {
                inner($($a),*)
            }

            match level {
                // SAFETY: levels come from `isa()` or `available()`, which report only what the
                // CPU supports.
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx512 => unsafe { avx512($($a),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::isa::Isa::Avx2 => unsafe { avx2($($a),*) },
                _ => inner($($a),*),
            }
        }
    };
}
pub(crate) use multiversion;
