//! Token plus position embedding: out[b, t] = wte[idx[b, t]] + wpe[t].

use super::real::{Real, COL_CHUNK, ROW_CHUNK};
use rayon::prelude::*;

/// out (B, T, C) from idx (B, T), wte (V, C), wpe (maxT, C)
pub fn encoder_forward<F: Real>(out: &mut [F], idx: &[u32], wte: &[F], wpe: &[F], b: usize, t: usize, c: usize) {
    out[..b * t * c].par_chunks_mut(c * ROW_CHUNK).enumerate().for_each(|(chunk, o)| {
        for (r, orow) in o.chunks_exact_mut(c).enumerate() {
            let bt = chunk * ROW_CHUNK + r;
            let (tok, pos) = (idx[bt] as usize, bt % t);
            let (e, p) = (&wte[tok * c..(tok + 1) * c], &wpe[pos * c..(pos + 1) * c]);
            for i in 0..c {
                orow[i] = e[i] + p[i];
            }
        }
    });
}

/// dwte (V, C) += scatter of dout by idx; dwpe (maxT, C) += Σ_b dout[b, t].
/// Each task owns a block of channels and visits every (b, t) in order: deterministic.
pub fn encoder_backward<F: Real>(
    dwte: &mut [F],
    dwpe: &mut [F],
    dout: &[F],
    idx: &[u32],
    b: usize,
    t: usize,
    c: usize,
) {
    let v = dwte.len() / c;
    let dwte_ptr = super::real::SyncPtr(dwte.as_mut_ptr());
    (0..c.div_ceil(COL_CHUNK)).into_par_iter().for_each(|ci| {
        let (c0, c1) = (ci * COL_CHUNK, ((ci + 1) * COL_CHUNK).min(c));
        let p = dwte_ptr;
        for bt in 0..b * t {
            let tok = idx[bt] as usize;
            debug_assert!(tok < v);
            for i in c0..c1 {
                // SAFETY: channels c0..c1 of every row belong to this task alone; tok < V was checked
                // by the model before the forward pass.
                unsafe { *p.get().add(tok * c + i) += dout[bt * c + i] };
            }
        }
    });
    dwpe[..t * c].par_chunks_mut(c).enumerate().for_each(|(pos, dp)| {
        for bi in 0..b {
            let g = &dout[(bi * t + pos) * c..(bi * t + pos + 1) * c];
            for i in 0..c {
                dp[i] += g[i];
            }
        }
    });
}
