//! Which PRGA+ implementation runs the whole turns, chosen for the CPU at hand.
//!
//! PRGA+ is a chain of dependent loads and stores through one 256-byte table, so its speed is
//! how many instructions a core issues a byte and how well it keeps them fed. Those differ by
//! CPU model more than by anything in the code: on an AMD EPYC of family 25 (Zen 4) the whole
//! turn in assembly (27 KiB of code) is the fastest, while on family 26 (Zen 5) the same code
//! overflows the instruction front end and runs at a third of a short loop's speed
//! (docs/benchmarks.md, "Cipher"). No static rule is proven on every model, so every kernel is
//! kept, tested against the vectors, and the fastest is measured once per process, on a few
//! turns, the first time a keystream is made (about 0.3 ms).
//!
//! `IVCSD_RC4PLUS_KERNEL=<name>` forces one, for tests and benchmarks; `ivcsd --version` and a
//! debug log line name the one in use.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::GROUP;
use super::GROUPS_PER_TABLE;
use super::steps;

/// The environment variable that forces a kernel by its [`Kernel::name`].
pub const KERNEL_ENV: &str = "IVCSD_RC4PLUS_KERNEL";

/// One way of running a whole turn of PRGA+ (256 steps from `i = 0`). All produce the same
/// keystream; they differ only in speed, which depends on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// The turn unrolled whole in x86-64 assembly: 21 instructions a byte, 27 KiB of code.
    #[cfg(target_arch = "x86_64")]
    AsmTurn,
    /// A loop over 32 groups of eight steps in x86-64 assembly: 22 instructions a byte,
    /// about 1 KiB of code.
    #[cfg(target_arch = "x86_64")]
    AsmGroups,
    /// The turn unrolled whole in Rust (about 25 KiB of code).
    RustTurn,
    /// A loop over 32 groups of eight steps unrolled in Rust.
    RustGroups,
    /// One step at a time, nothing unrolled: the smallest code.
    Compact,
}

/// [`KERNEL_ENV`] named no kernel this build has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{KERNEL_ENV}={name}: unknown rc4+ kernel (known: {known})", known = Kernel::known_names())]
pub struct UnknownKernel {
    /// What the variable said.
    pub name: String,
}

/// How the kernel in use was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Measured fastest on this CPU at start-up.
    Measured,
    /// Forced by [`KERNEL_ENV`].
    Forced,
}

impl Kernel {
    /// Every kernel of this build, the measurement's tie-breaking order first (the one the
    /// fewest instructions a byte).
    pub const ALL: &[Kernel] = &[
        #[cfg(target_arch = "x86_64")]
        Kernel::AsmTurn,
        #[cfg(target_arch = "x86_64")]
        Kernel::AsmGroups,
        Kernel::RustTurn,
        Kernel::RustGroups,
        Kernel::Compact,
    ];

    /// The name [`KERNEL_ENV`] takes and the logs and `--version` show.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::AsmTurn => "asm-turn",
            #[cfg(target_arch = "x86_64")]
            Kernel::AsmGroups => "asm-groups",
            Kernel::RustTurn => "rust-turn",
            Kernel::RustGroups => "rust-groups",
            Kernel::Compact => "compact",
        }
    }

    /// The kernel called `name`, if this build has it.
    pub fn from_name(name: &str) -> Option<Kernel> {
        Kernel::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// The names of [`Kernel::ALL`], comma-separated, for messages.
    pub fn known_names() -> String {
        let names: Vec<&str> = Kernel::ALL.iter().map(|k| k.name()).collect();
        names.join(", ")
    }

    /// The kernel [`KERNEL_ENV`] forces, if it is set.
    ///
    /// # Errors
    /// [`UnknownKernel`] when it names no kernel of this build. The CLI checks this at start
    /// so that a typo is an error, not a silently measured choice.
    pub fn forced() -> Result<Option<Kernel>, UnknownKernel> {
        match std::env::var(KERNEL_ENV) {
            Ok(name) if !name.is_empty() => Kernel::from_name(&name)
                .map(Some)
                .ok_or(UnknownKernel { name }),
            _ => Ok(None),
        }
    }

    /// The kernel this process uses, chosen on first use: the forced one, or the fastest of
    /// [`Kernel::ALL`] measured on this CPU ([`Kernel::measure_fastest`]).
    pub fn active() -> (Kernel, Choice) {
        static ACTIVE: OnceLock<(Kernel, Choice)> = OnceLock::new();
        *ACTIVE.get_or_init(|| match Kernel::forced() {
            Ok(Some(kernel)) => (kernel, Choice::Forced),
            Ok(None) => (Kernel::measure_fastest(), Choice::Measured),
            Err(unknown) => {
                tracing::warn!("{unknown}; measuring instead");
                (Kernel::measure_fastest(), Choice::Measured)
            }
        })
    }

    /// Times every kernel on [`PROBE_TURNS`] turns, [`PROBE_ROUNDS`] times round-robin (so
    /// that a clock change or an interrupt hits them alike), and returns the one with the
    /// shortest best time; ties go to the earlier in [`Kernel::ALL`].
    pub fn measure_fastest() -> Kernel {
        let mut best = [Duration::MAX; Kernel::ALL.len()];
        let mut cipher = super::Rc4Plus::with_key32(&[0x5A; 32]);
        let mut buf = [0u8; PROBE_TURNS * 256];
        for _ in 0..PROBE_ROUNDS {
            for (kernel, best) in Kernel::ALL.iter().zip(best.iter_mut()) {
                let start = Instant::now();
                cipher.apply_keystream_with(*kernel, &mut buf);
                *best = (*best).min(start.elapsed());
                std::hint::black_box(&buf);
            }
        }
        let fastest = (0..Kernel::ALL.len())
            .min_by_key(|&n| best[n])
            .unwrap_or_default();
        Kernel::ALL[fastest]
    }

    /// Runs the whole turns of `turns` from `j` and `S[0]` (`si`); returns the new `j` and
    /// `S[0]`. Each arm is a loop with its turn inlined, so the match runs once per call.
    #[inline]
    pub(super) fn run_turns(
        self,
        s: &mut [u8; 256],
        mut j: usize,
        mut si: usize,
        turns: &mut [[[u8; GROUP]; GROUPS_PER_TABLE]],
    ) -> (usize, usize) {
        macro_rules! each_turn {
            ($turn_fn:path) => {
                for turn in turns {
                    (j, si) = $turn_fn(s, j, si, turn);
                }
            };
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::AsmTurn => each_turn!(super::x86_64::prga_turn),
            #[cfg(target_arch = "x86_64")]
            Kernel::AsmGroups => each_turn!(super::x86_64::prga_turn_grouped),
            Kernel::RustTurn => each_turn!(steps::prga_turn),
            Kernel::RustGroups => each_turn!(steps::prga_turn_grouped),
            Kernel::Compact => each_turn!(steps::prga_turn_compact),
        }
        (j, si)
    }
}

/// Turns per timing of [`Kernel::measure_fastest`]: 8 KiB, about 20 µs a kernel here.
const PROBE_TURNS: usize = 32;
/// Timings per kernel; the best counts.
const PROBE_ROUNDS: usize = 3;

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Choice::Measured => "measured fastest on this cpu",
            Choice::Forced => "forced by IVCSD_RC4PLUS_KERNEL",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for kernel in Kernel::ALL {
            assert_eq!(Kernel::from_name(kernel.name()), Some(*kernel));
        }
        let mut names: Vec<_> = Kernel::ALL.iter().map(|k| k.name()).collect();
        names.dedup();
        assert_eq!(names.len(), Kernel::ALL.len());
        assert_eq!(Kernel::from_name("asm"), None);
        assert_eq!(Kernel::from_name(""), None);
    }

    #[test]
    fn unknown_kernel_message_lists_the_known_ones() {
        let err = UnknownKernel {
            name: "fastest".into(),
        };
        let text = err.to_string();
        assert!(text.starts_with("IVCSD_RC4PLUS_KERNEL=fastest: unknown rc4+ kernel"));
        for kernel in Kernel::ALL {
            assert!(text.contains(kernel.name()), "{text}");
        }
    }

    #[test]
    fn measurement_picks_a_kernel_of_this_build_quickly() {
        let start = Instant::now();
        let kernel = Kernel::measure_fastest();
        // Generous for a debug build on a busy machine; the release figure is in the docs.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(Kernel::ALL.contains(&kernel));
    }

    /// Every kernel against the plain step loop, over whole turns from several tables and
    /// `j`s, including the step whose swap writes the next `S[i]`.
    #[test]
    fn every_kernel_equals_the_plain_steps() {
        for seed in 0u8..16 {
            let mut reference = super::super::Rc4Plus::with_key32(&[seed; 32]);
            reference.skip(usize::from(seed) * 37);
            // Align to a turn: the kernels start at i = 0.
            let to_turn = (256 - (usize::from(reference.i) + 1) % 256) % 256;
            reference.skip(to_turn);
            let mut expected = vec![seed; 4 * 256];
            let mut plain = reference.clone();
            plain.apply_plain(&mut expected);
            for kernel in Kernel::ALL {
                let mut cipher = reference.clone();
                let mut got = vec![seed; 4 * 256];
                cipher.apply_keystream_with(*kernel, &mut got);
                assert_eq!(got, expected, "{kernel} seed {seed}");
                assert_eq!(
                    (cipher.i, cipher.j, cipher.s),
                    (plain.i, plain.j, plain.s),
                    "{kernel} seed {seed}"
                );
            }
        }
    }
}
