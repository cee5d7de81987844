//! A launch's arguments checked against its kernel's C signature (`Kernel::signature`) and the
//! buffers' types, and packed as `cuLaunchKernel` takes them. Pure: tested on the CPU.

use super::super::kernel::{ArgKind, Kernel};
use super::super::plan::{Arg, BufSpec, Dtype, Launch, Precision, View};
use crate::{Error, Result};

/// One argument as the device receives it; a pointer is still (buffer, byte offset) until the
/// executor adds the buffer's device address.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Packed {
    Ptr { buf: usize, byte_offset: usize },
    Null,
    I32(i32),
    U64(u64),
    F32(f32),
}

impl Packed {
    /// The argument's bytes in an 8-byte slot, from the first byte, as `cuLaunchKernel` reads them
    /// (it reads the parameter's C size: 8 for pointers and `unsigned long long`, 4 for `int` and
    /// `float`; little-endian hosts, as every CUDA host is). `base` is the pointer's buffer address.
    pub fn slot(self, base: impl Fn(usize) -> u64) -> u64 {
        match self {
            Packed::Ptr { buf, byte_offset } => base(buf) + byte_offset as u64,
            Packed::Null => 0,
            Packed::I32(v) => v as u32 as u64,
            Packed::U64(v) => v,
            Packed::F32(v) => v.to_bits() as u64,
        }
    }
}

/// Checks that a view lies inside its buffer; an error naming `what` otherwise.
pub fn check_view(v: View, bufs: &[BufSpec], what: &dyn Fn() -> String) -> Result<()> {
    let spec = bufs.get(v.buf.0 as usize).ok_or_else(|| {
        Error::Device(format!("{}: buffer {} does not exist (the plan has {})", what(), v.buf.0, bufs.len()))
    })?;
    if v.offset + v.len > spec.len {
        return Err(Error::Device(format!(
            "{}: view [{}, {}) outside buffer '{}' of {} elements",
            what(),
            v.offset,
            v.offset + v.len,
            spec.name,
            spec.len
        )));
    }
    Ok(())
}

fn kind_name(k: ArgKind) -> &'static str {
    match k {
        ArgKind::X => "an X pointer",
        ArgKind::OptX => "an X pointer or null",
        ArgKind::F32 => "an F32 pointer",
        ArgKind::OptF32 => "an F32 pointer or null",
        ArgKind::U32 => "a U32 pointer",
        ArgKind::I32 => "an int",
        ArgKind::U64 => "an unsigned long long",
        ArgKind::Float => "a float",
    }
}

fn arg_name(a: &Arg, bufs: &[BufSpec]) -> String {
    match a {
        Arg::Ptr(v) => match bufs.get(v.buf.0 as usize) {
            Some(s) => format!("a pointer into '{}' ({:?})", s.name, s.dtype),
            None => format!("a pointer into buffer {}", v.buf.0),
        },
        Arg::Null => "null".into(),
        Arg::I32(v) => format!("the int {v}"),
        Arg::U64(v) => format!("the u64 {v}"),
        Arg::F32(v) => format!("the float {v}"),
    }
}

/// The launch's arguments, each checked against the kernel's signature (count, kind, the pointed-to
/// buffer's dtype, the view inside its buffer) and packed; an error naming the kernel and the
/// argument otherwise.
pub fn pack(launch: &Launch, bufs: &[BufSpec], precision: Precision) -> Result<Vec<Packed>> {
    let k: Kernel = launch.kernel;
    let sig = k.signature();
    if launch.args.len() != sig.len() {
        return Err(Error::Device(format!(
            "kernel {}: {} arguments, its signature has {}",
            k.name(),
            launch.args.len(),
            sig.len()
        )));
    }
    let mut out = Vec::with_capacity(sig.len());
    for (i, (arg, &kind)) in launch.args.iter().zip(sig).enumerate() {
        let what = || format!("kernel {} argument {i}", k.name());
        let wants = |d: Dtype| match *arg {
            Arg::Ptr(v) => bufs.get(v.buf.0 as usize).is_some_and(|s| s.dtype == d),
            _ => false,
        };
        let ok = match kind {
            ArgKind::X => wants(Dtype::X),
            ArgKind::F32 => wants(Dtype::F32),
            ArgKind::U32 => wants(Dtype::U32),
            ArgKind::OptX => *arg == Arg::Null || wants(Dtype::X),
            ArgKind::OptF32 => *arg == Arg::Null || wants(Dtype::F32),
            ArgKind::I32 => matches!(arg, Arg::I32(_)),
            ArgKind::U64 => matches!(arg, Arg::U64(_)),
            ArgKind::Float => matches!(arg, Arg::F32(_)),
        };
        if !ok {
            return Err(Error::Device(format!(
                "{}: the signature wants {}, the launch gives {}",
                what(),
                kind_name(kind),
                arg_name(arg, bufs)
            )));
        }
        out.push(match *arg {
            Arg::Ptr(v) => {
                check_view(v, bufs, &what)?;
                let size = precision.size_of(bufs[v.buf.0 as usize].dtype);
                Packed::Ptr { buf: v.buf.0 as usize, byte_offset: v.offset * size }
            }
            Arg::Null => Packed::Null,
            Arg::I32(v) => Packed::I32(v),
            Arg::U64(v) => Packed::U64(v),
            Arg::F32(v) => Packed::F32(v),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::super::kernel::{geometry, RowKernel};
    use super::super::super::plan::Plan;
    use super::*;

    fn launch(kernel: Kernel, args: Vec<Arg>) -> Launch {
        let ints: Vec<i32> = args.iter().filter_map(|a| if let Arg::I32(v) = a { Some(*v) } else { None }).collect();
        let (grid, block, shared_bytes) = geometry(kernel, &ints);
        Launch { kernel, args, grid, block, shared_bytes }
    }

    /// A LayerNorm forward at offsets: pointers become (buffer, bytes) in the precision's sizes,
    /// a missing bias is null, the integers pass by value.
    #[test]
    fn packs_in_signature_order_with_byte_offsets() {
        let mut p = Plan::default();
        let (n, c) = (3, 8);
        let out = p.buffer("out", Dtype::X, 2 * n * c);
        let mean = p.buffer("mean", Dtype::F32, n);
        let rstd = p.buffer("rstd", Dtype::F32, n);
        let inp = p.buffer("inp", Dtype::X, n * c);
        let w = p.buffer("w", Dtype::X, 4 * c);
        let l = launch(
            Kernel::LayerNormForward,
            vec![
                Arg::Ptr(out.sub(n * c, n * c)),
                Arg::Ptr(mean),
                Arg::Ptr(rstd),
                Arg::Ptr(inp),
                Arg::Ptr(w.sub(2 * c, c)),
                Arg::Null,
                Arg::I32(n as i32),
                Arg::I32(c as i32),
            ],
        );
        let bf = pack(&l, &p.bufs, Precision::Bf16).unwrap();
        assert_eq!(bf[0], Packed::Ptr { buf: 0, byte_offset: 2 * n * c });
        assert_eq!(bf[4], Packed::Ptr { buf: 4, byte_offset: 2 * 2 * c });
        assert_eq!(bf[5], Packed::Null);
        assert_eq!(&bf[6..], &[Packed::I32(3), Packed::I32(8)]);
        let f = pack(&l, &p.bufs, Precision::F32).unwrap();
        assert_eq!(f[0], Packed::Ptr { buf: 0, byte_offset: 4 * n * c });
        assert_eq!(f[1], Packed::Ptr { buf: 1, byte_offset: 0 });
        // The slots: base + offset, ints and floats in the low 4 bytes.
        assert_eq!(f[0].slot(|b| 0x1000 * (b as u64 + 1)), 0x1000 + 96);
        assert_eq!(Packed::I32(-1).slot(|_| 0), 0xffff_ffff);
        assert_eq!(Packed::F32(1.5).slot(|_| 0), 1.5f32.to_bits() as u64);
        assert_eq!(Packed::U64(u64::MAX).slot(|_| 0), u64::MAX);
        assert_eq!(Packed::Null.slot(|_| 7), 0);
    }

    #[test]
    fn mismatches_name_the_kernel_and_the_argument() {
        let mut p = Plan::default();
        let att = p.buffer("att", Dtype::X, 2 * 4 * 4);
        let pre = p.buffer("preatt", Dtype::X, 2 * 4 * 4);
        let f = p.buffer("f32", Dtype::F32, 32);
        let ok = vec![
            Arg::Ptr(att),
            Arg::Ptr(pre),
            Arg::Null,
            Arg::I32(2),
            Arg::I32(4),
            Arg::I32(1),
            Arg::F32(0.0),
            Arg::F32(0.0),
        ];
        let k = Kernel::AttnRowForward(RowKernel::Quiet);
        assert!(pack(&launch(k, ok.clone()), &p.bufs, Precision::Bf16).is_ok());
        let err = |args: Vec<Arg>| pack(&launch(k, args), &p.bufs, Precision::Bf16).unwrap_err().to_string();
        // An F32 buffer where X is wanted.
        let mut a = ok.clone();
        a[1] = Arg::Ptr(f);
        let e = err(a);
        assert!(e.contains("kernel attn_quiet_forward argument 1") && e.contains("wants an X pointer"), "{e}");
        assert!(e.contains("'f32' (F32)"), "{e}");
        // Null where a pointer is required; an int where a float is.
        let mut a = ok.clone();
        a[0] = Arg::Null;
        assert!(err(a).contains("argument 0: the signature wants an X pointer, the launch gives null"));
        let mut a = ok.clone();
        a[6] = Arg::I32(0);
        assert!(err(a).contains("argument 6: the signature wants a float, the launch gives the int 0"));
        // Too few arguments.
        let e = err(ok[..7].to_vec());
        assert!(e.contains("kernel attn_quiet_forward: 7 arguments, its signature has 8"), "{e}");
        // A view past its buffer's end, and a buffer that does not exist.
        let mut a = ok.clone();
        a[0] = Arg::Ptr(View { buf: att.buf, offset: 8, len: 32 });
        let e = err(a);
        assert!(e.contains("argument 0: view [8, 40) outside buffer 'att' of 32 elements"), "{e}");
        let mut a = ok.clone();
        a[2] = Arg::Ptr(View { buf: super::super::super::plan::BufId(9), offset: 0, len: 1 });
        assert!(err(a).contains("argument 2"));
    }
}
