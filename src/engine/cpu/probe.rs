//! The hook of analysis and fake quantization into the forward pass: a `Probe` sees activations and may
//! change the inputs of Linear layers, in an inference-only pass. Training passes none.

/// The inputs of the four Linear layers of a block (the lm_head is not among them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Linear {
    /// attn.c_attn, input ln_1(x) (B, T, C). The gated variants' attn.c_gate / attn.c_outgate read the
    /// same tensor after this hook: one input, one quantizer.
    Qkv,
    /// attn.c_proj, input the concatenated head outputs (B, T, C), after the gate of the gated variants
    AttnProj,
    /// mlp.c_fc, input ln_2(x) (B, T, C)
    Fc,
    /// mlp.c_proj, input gelu(c_fc(.)) (B, T, 4C)
    FcProj,
}

/// Activations that a probe can observe during a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Point {
    /// the block input of layer 0: wte[idx] + wpe (after dropout) (B, T, C)
    Embedding,
    /// ln_1 output (B, T, C)
    Ln1,
    /// attn.c_attn output (B, T, 3C): q, k, v of every head (head h's channels h·hs..(h+1)·hs of each)
    Qkv,
    /// gate values σ(z) of the gated variants (B, T, G), G = n_head (`gated`) or C (`outgate`); not
    /// observed for the other variants
    Gate,
    /// attention output after c_proj (and dropout), before the residual add (B, T, C)
    AttnOut,
    /// ln_2 output (B, T, C)
    Ln2,
    /// MLP hidden after GELU (B, T, 4C)
    MlpHidden,
    /// MLP output after c_proj (and dropout), before the residual add (B, T, C)
    MlpOut,
    /// residual stream after the block (B, T, C)
    Residual,
    /// ln_f output (B, T, C); reported with layer = n_layer
    LnF,
}

/// A hook into the forward pass for analysis and fake quantization. Training passes none; the hook can
/// only see activations and change the inputs of Linear layers, never what the trainer does.
pub trait Probe<F = f32>: Send {
    /// The input of `linear` in block `layer`, just before the matmul; may be modified in place.
    fn linear_input(&mut self, _layer: usize, _linear: Linear, _x: &mut [F]) {}
    /// An activation, for observation.
    fn observe(&mut self, _layer: usize, _point: Point, _x: &[F]) {}
}

/// The probe of a pass, if any: each call is a no-op without one.
pub(crate) struct Tap<'a, 'p, F>(pub Option<&'a mut (dyn Probe<F> + 'p)>);

impl<F> Tap<'_, '_, F> {
    #[inline]
    pub fn observe(&mut self, layer: usize, point: Point, x: &[F]) {
        if let Some(p) = self.0.as_deref_mut() {
            p.observe(layer, point, x);
        }
    }

    #[inline]
    pub fn linear_input(&mut self, layer: usize, linear: Linear, x: &mut [F]) {
        if let Some(p) = self.0.as_deref_mut() {
            p.linear_input(layer, linear, x);
        }
    }
}
