//! Resuming an experiment: a run with a `done.json` written from the same `RunSpec` is loaded instead
//! of trained again; one written from another spec stops the experiment with the keys that changed.

use super::{Arm, Experiment, DONE_FILE};
use crate::analysis::record::{EvalPoint, RunRecord, RunSpec};
use crate::config::Config;
use crate::{Error, Result};
use std::path::Path;

impl Experiment {
    /// The run's record if it is finished with the same spec; an error if finished with another.
    pub(super) fn load_done(&self, arm: &Arm, seed: u64, spec: &RunSpec) -> Result<Option<RunRecord>> {
        let path = self.run_dir(arm, seed).join(DONE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut rec: RunRecord = serde_json::from_str(&text).map_err(|e| {
            Error::Data(format!("{}: unreadable ({e}); delete that run directory to redo the run", path.display()))
        })?;
        if rec.spec != *spec {
            return Err(Error::Config(format!(
                "{} was finished with different settings ({}); re-run with the original arguments, pass a new --out, \
                 or delete the run directory to redo it",
                path.display(),
                spec_diff(&rec.spec, spec)
            )));
        }
        if rec.arm.is_empty() {
            rec.arm = rec.variant.to_string(); // written before arms existed: the arm was its variant
        }
        Ok(Some(rec))
    }
}

/// The eval events of metrics.jsonl, one per iteration (a segment boundary evaluates twice; the
/// values agree, the last is kept).
pub(super) fn read_curve(path: &Path) -> Result<Vec<EvalPoint>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut points: std::collections::BTreeMap<usize, EvalPoint> = Default::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["event"] == "eval" {
            if let Some(iter) = v["iter"].as_u64() {
                let (train_loss, val_loss) = (v["train_loss"].as_f64(), v["val_loss"].as_f64());
                points.insert(iter as usize, EvalPoint { iter: iter as usize, train_loss, val_loss });
            }
        }
    }
    Ok(points.into_values().collect())
}

/// "max_iters: 4000 → 2000, data changed" — the keys in which two specs differ.
fn spec_diff(old: &RunSpec, new: &RunSpec) -> String {
    let table = |c: &Config| toml::Table::try_from(c).unwrap_or_default();
    let (a, b) = (table(&old.config), table(&new.config));
    // Floats are f32 in the config: print them as such (0.001, not 0.0010000000474974513).
    let show = |v: Option<&toml::Value>| match v {
        Some(toml::Value::Float(f)) => (*f as f32).to_string(),
        Some(v) => v.to_string(),
        None => "?".into(),
    };
    let mut parts: Vec<String> = b
        .iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {} → {}", show(a.get(k)), show(Some(v))))
        .collect();
    if old.data != new.data {
        parts.push("the prepared data".into());
    }
    if old.overrides != new.overrides {
        parts.push(format!("the arm's overrides: {:?} → {:?}", old.overrides, new.overrides));
    }
    if old.options != new.options {
        parts.push(format!("analysis options: {:?} → {:?}", old.options, new.options));
    }
    if parts.is_empty() {
        parts.push("unknown".into());
    }
    parts.join(", ")
}
