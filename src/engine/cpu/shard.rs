//! Data parallelism inside one step. The batch is cut into shards of whole sequences, one per worker;
//! each shard runs the whole forward and backward over its own rows, with single-threaded GEMMs, and
//! writes its own parameter gradients, which are summed in shard order at the end. Compared with
//! splitting every kernel across the cores, this leaves one fork and join per pass instead of one per
//! kernel, keeps each core's activations in its own cache, and lets small GEMMs run without the GEMM
//! crate's threading. Only the rounding of the gradient sum depends on the number of shards.
//!
//! Buffers are laid out shard-major: shard s, with sequences [b·s/S, b·(s+1)/S), owns one contiguous
//! region of every buffer, laid out inside as the unsharded buffer would be for its nb sequences
//! (per-layer buffers: (L, nb, T, W)). With one shard this is the plain (L, B, T, W) layout, and
//! buffers without a layer dimension, such as the logits (B, T, V), have it for any number of shards.

use std::ops::Range;

/// The sequences of one shard.
#[derive(Clone, Debug)]
pub struct Shard {
    pub seqs: Range<usize>,
}

/// Something that can be cut at a shard boundary: `left_seqs` of its `seqs` sequences (or
/// `left_shards` of its per-shard items) go left.
pub trait Split: Sized {
    fn split(self, left_seqs: usize, seqs: usize, left_shards: usize) -> (Self, Self);
}

/// Per-shard items (one each), cut by shard.
impl<T> Split for &mut [T] {
    fn split(self, _: usize, _: usize, left_shards: usize) -> (Self, Self) {
        self.split_at_mut(left_shards)
    }
}

impl<A: Split, B: Split> Split for (A, B) {
    fn split(self, left_seqs: usize, seqs: usize, left_shards: usize) -> (Self, Self) {
        let (a0, a1) = self.0.split(left_seqs, seqs, left_shards);
        let (b0, b1) = self.1.split(left_seqs, seqs, left_shards);
        ((a0, b0), (a1, b1))
    }
}

/// First sequence of shard s of `shards` over a batch of b.
pub fn first_seq(b: usize, s: usize, shards: usize) -> usize {
    b * s / shards
}

/// Runs `f(part, shard)` for shards `range` of `shards` over a batch of `b` sequences, side by side on
/// the pool (by halving, so nothing is allocated). `v` covers exactly the sequences of `range`.
pub fn for_each_shard<V: Split + Send>(
    v: V,
    b: usize,
    range: Range<usize>,
    shards: usize,
    f: &(impl Fn(V, Shard) + Sync),
) {
    let (s0, s1) = (range.start, range.end);
    if s1 - s0 == 1 {
        return f(v, Shard { seqs: first_seq(b, s0, shards)..first_seq(b, s1, shards) });
    }
    let mid = s0 + (s1 - s0) / 2;
    let (b0, bm, b1) = (first_seq(b, s0, shards), first_seq(b, mid, shards), first_seq(b, s1, shards));
    let (left, right) = v.split(bm - b0, b1 - b0, mid - s0);
    rayon::join(|| for_each_shard(left, b, s0..mid, shards, f), || for_each_shard(right, b, mid..s1, shards, f));
}

/// How a buffer grows with the sequences it holds: per token (B·T rows of something), per pair of
/// tokens (attention probabilities, B·T·T) or per sequence (B).
#[derive(Clone, Copy, Debug)]
pub enum Unit {
    Token,
    TokenPair,
    Seq,
}

impl Unit {
    /// Floats per sequence of length t, in a buffer of `len` floats made for `cap_b` sequences of `cap_t`.
    pub fn per_seq(self, len: usize, cap_b: usize, cap_t: usize, t: usize) -> usize {
        match self {
            Unit::Token => len / (cap_b * cap_t) * t,
            Unit::TokenPair => len / (cap_b * cap_t * cap_t) * t * t,
            Unit::Seq => len / cap_b,
        }
    }
}

/// `buffers! { struct Name { field: Unit, ... } }`: a struct of buffers, `Name<Vec<F>>` owning them and
/// `Name<&mut [F]>` viewing the region of some sequences. A view of b sequences of length t holds
/// `Unit::per_seq` floats per sequence of every buffer, so it is cut at a sequence boundary by cutting
/// every buffer there.
#[macro_export]
macro_rules! buffers {
    ($(#[$m:meta])* $vis:vis struct $name:ident { $($(#[$fm:meta])* $f:ident: $unit:ident,)* }) => {
        $(#[$m])*
        $vis struct $name<B> {
            $($(#[$fm])* $vis $f: B,)*
        }

        impl<F> $name<Vec<F>> {
            /// The numbers held, all buffers together.
            #[allow(dead_code)]
            $vis fn len(&self) -> usize {
                0 $(+ self.$f.len())*
            }

            /// The region of b sequences of length t, in buffers made for `cap` = (sequences, length).
            $vis fn view(&mut self, b: usize, t: usize, cap: (usize, usize)) -> $name<&mut [F]> {
                use $crate::engine::cpu::shard::Unit;
                $name { $($f: {
                    let per = Unit::$unit.per_seq(self.$f.len(), cap.0, cap.1, t);
                    &mut self.$f[..b * per]
                },)* }
            }
        }

        impl<'a, F> $crate::engine::cpu::shard::Split for $name<&'a mut [F]> {
            fn split(self, left_seqs: usize, seqs: usize, _: usize) -> (Self, Self) {
                let mut right = $name { $($f: <&mut [F]>::default(),)* };
                let left = $name {
                    $($f: {
                        let per = self.$f.len() / seqs;
                        debug_assert_eq!(per * seqs, self.$f.len());
                        let (l, r) = self.$f.split_at_mut(left_seqs * per);
                        right.$f = r;
                        l
                    },)*
                };
                (left, right)
            }
        }
    };
}

/// Runs `f` on a worker of the rayon pool. Called from outside the pool, every parallel kernel would
/// wake the pool and put the calling thread to sleep until it is done (two context switches per kernel,
/// hundreds per step); from a worker, the kernels fork and join inside the pool.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
