//! softmax1 ("quiet") `normalize` / `normalize_backward` against the golden edge-case rows
//! (`softmax1_unit/`: float64 reference of the stable formula m = max(0, max_j x_j)), in f32 and f64.
//! Masked keys are given as −∞, as the API says; no row may give NaN (the seed's `surftmex` did).

mod common;

use common::{golden_dir, VariantExt};
use quietgpt::config::AttentionKind;
use quietgpt::engine::cpu::attention::{normalize, normalize_backward, Variant};
use quietgpt::engine::cpu::weights::{parse, to_vec};
use quietgpt::engine::cpu::Real;

/// f32 max abs error vs ref64 for y and dx. summary.json shows the stable formula in float32
/// (`stable32`) at ≤ 3.3e-8 over all rows (≤ 2.4e-8 for y); our f32 kernel is the same formula with
/// another exp (`real::exp_f32`, ≤ 2 ulp) and summation order. Every |y|, |dx| here is < 0.63, so 1e-7 is
/// 2-3 float32 ulps and ~3× stable32's worst, while any real error (a wrong m, a missing null term
/// exp(−m) = 1/(1+Σ) → 1/Σ) moves y or dx by ≥ 2e-4 on these rows (1e-2 on most).
const TOL32: f64 = 1e-7;
/// Rows whose values are all tiny (the underflow family, max_j x_j ≤ −80) are also checked relatively,
/// |a − r| ≤ REL32·|r| + SUB32, so that "0 instead of 1.7e-34" fails. References below NORMAL32 (about
/// float32's smallest normal, where exp_f32 documents a flush to 0) may instead be exactly 0.
/// SUB32 is a few float32 subnormal steps (1.4e-45 each).
const REL32: f64 = 1e-5;
const SUB32: f64 = 1e-44;
const NORMAL32: f64 = 1e-36;
/// f64 vs the float64 reference: the same formula in the same precision, so only rounding (~1e-16).
const TOL64: f64 = 1e-12;

fn labels_of(v: &serde_json::Value) -> Vec<String> {
    v.as_array().expect("rows: a list").iter().map(|l| l.as_str().expect("row label").to_string()).collect()
}

struct Unit {
    labels: Vec<String>,
    bytes: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl Unit {
    fn load() -> Unit {
        let dir = golden_dir().join("softmax1_unit");
        let bytes = std::fs::read(dir.join("softmax1_unit.safetensors"))
            .unwrap_or_else(|e| panic!("cannot read {}: {e} (set QUIETGPT_GOLDEN)", dir.display()));
        // summary.json writes the seed's infinite errors as a bare `Infinity` (Python's json), which is
        // not JSON: read it as null. The labels are also in the safetensors header; both must agree.
        let summary = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json");
        let summary: serde_json::Value =
            serde_json::from_str(&summary.replace("Infinity", "null")).expect("summary.json parses");
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("safetensors header");
        let header_rows = meta.metadata().as_ref().and_then(|m| m.get("rows")).expect("header metadata: rows");
        let header_rows: serde_json::Value = serde_json::from_str(header_rows).expect("header rows parse");
        let labels = labels_of(&summary["rows"]);
        assert_eq!(labels, labels_of(&header_rows), "row labels: summary.json vs safetensors header");
        let (rows, cols) = {
            let st = parse(&bytes, "softmax1_unit.safetensors").unwrap();
            let x = st.tensor("x").expect("tensor x");
            (x.shape()[0], x.shape()[1])
        };
        assert_eq!(labels.len(), rows, "summary.json rows vs x");
        Unit { labels, bytes, rows, cols }
    }

    fn get<F: Real>(&self, name: &str) -> Vec<F> {
        let st = parse(&self.bytes, "softmax1_unit.safetensors").unwrap();
        let v = to_vec::<F>(&st.tensor(name).unwrap_or_else(|_| panic!("tensor {name}"))).unwrap();
        assert_eq!(v.len(), self.rows * self.cols, "{name}");
        v
    }
}

/// normalize + normalize_backward row by row, in F.
fn run<F: Real>(u: &Unit) -> (Vec<F>, Vec<F>) {
    let (x, g) = (u.get::<F>("x"), u.get::<F>("upstream_grad"));
    let mut y = x.clone();
    let mut dx = g.clone();
    for r in 0..u.rows {
        let s = r * u.cols..(r + 1) * u.cols;
        let v = Variant::new(AttentionKind::Quiet);
        normalize(&v, 0, &mut y[s.clone()]);
        let p = y[s.clone()].to_vec();
        normalize_backward(&v, 0, &p, &p, &mut dx[s]);
    }
    (y, dx)
}

fn max_abs_err<F: Real>(a: &[F], r: &[f64]) -> f64 {
    a.iter().zip(r).map(|(a, r)| (a.to_f64() - r).abs()).fold(0.0, f64::max)
}

/// Checks one precision; returns the worst (y, dx) error for the report.
fn check<F: Real>(u: &Unit, tol: f64, relative_underflow_check: bool) -> (f64, f64) {
    let (y, dx) = run::<F>(u);
    let (ry, rdx) = (u.get::<f64>("ref64_y"), u.get::<f64>("ref64_dx"));
    let x = u.get::<f64>("x");
    let mut failures = Vec::new();
    let (mut worst_y, mut worst_dx) = (0.0f64, 0.0f64);
    for r in 0..u.rows {
        let s = r * u.cols..(r + 1) * u.cols;
        let label = &u.labels[r];
        let nan = y[s.clone()].iter().chain(&dx[s.clone()]).filter(|v| !v.to_f64().is_finite()).count();
        let (ey, edx) = (max_abs_err(&y[s.clone()], &ry[s.clone()]), max_abs_err(&dx[s.clone()], &rdx[s.clone()]));
        worst_y = worst_y.max(ey);
        worst_dx = worst_dx.max(edx);
        println!("  row {r:2} {label:22} y err {ey:.2e}  dx err {edx:.2e}  non-finite {nan}");
        if nan > 0 {
            failures.push(format!("row {r} ({label}): {nan} NaN/inf values in y or dx"));
        }
        if !(ey <= tol && edx <= tol) {
            failures.push(format!("row {r} ({label}): max abs error y {ey:.3e}, dx {edx:.3e} > {tol:e}"));
        }
        // Masked keys (−∞) get exactly 0 probability and exactly 0 gradient.
        for i in s.clone() {
            if x[i] == f64::NEG_INFINITY && (y[i].to_f64() != 0.0 || dx[i].to_f64() != 0.0) {
                failures.push(format!(
                    "row {r} ({label}): masked key {} has y {:?}, dx {:?}",
                    i - s.start,
                    y[i],
                    dx[i]
                ));
            }
        }
        let row_max = ry[s.clone()].iter().fold(0.0f64, |a, v| a.max(v.abs()));
        if relative_underflow_check && row_max < 1e-30 {
            for i in s.clone() {
                for (what, a, rf) in [("y", y[i].to_f64(), ry[i]), ("dx", dx[i].to_f64(), rdx[i])] {
                    let flushed = rf.abs() < NORMAL32 && a == 0.0;
                    if (a - rf).abs() > REL32 * rf.abs() + SUB32 && !flushed {
                        failures.push(format!("row {r} ({label}): {what}[{}] = {a:e}, reference {rf:e}", i - s.start));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "softmax1 unit rows failed:\n{}", failures.join("\n"));
    (worst_y, worst_dx)
}

#[test]
fn softmax1_unit_f32_matches_reference_without_nan() {
    let u = Unit::load();
    println!("f32 (tolerance {TOL32:e}):");
    let (ey, edx) = check::<f32>(&u, TOL32, true);
    println!("f32 worst: y {ey:.2e}, dx {edx:.2e}");
}

#[test]
fn softmax1_unit_f64_matches_reference() {
    let u = Unit::load();
    println!("f64 (tolerance {TOL64:e}):");
    let (ey, edx) = check::<f64>(&u, TOL64, false);
    println!("f64 worst: y {ey:.2e}, dx {edx:.2e}");
}

/// The rows with a known closed form, exactly: `[0, −∞…]` → y = [0.5, 0…]; all −∞ → y = 0, dx = 0.
#[test]
fn softmax1_unit_exact_rows() {
    let u = Unit::load();
    let (y, dx) = run::<f32>(&u);
    let row = |label: &str| {
        let r = u.labels.iter().position(|l| l == label).unwrap_or_else(|| panic!("no row {label}"));
        r * u.cols..(r + 1) * u.cols
    };
    let s = row("one_zero_rest_masked");
    assert_eq!(y[s.start], 0.5, "one_zero_rest_masked: y[0]");
    assert!(y[s.start + 1..s.end].iter().all(|&v| v == 0.0), "one_zero_rest_masked: masked y");
    let s = row("fully_masked");
    assert!(y[s.clone()].iter().all(|&v| v == 0.0), "fully_masked: y = {:?}", &y[s.clone()]);
    assert!(dx[s.clone()].iter().all(|&v| v == 0.0), "fully_masked: dx = {:?}", &dx[s]);
}
