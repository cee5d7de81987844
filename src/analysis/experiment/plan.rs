//! Sharding an experiment over several processes (`--shard i/n`) and merging their runs into one
//! report (`--merge`).
//!
//! Every invocation writes the experiment's plan, `<out>/experiment.json` (`PlanFile`: the base
//! config, the arms, the seeds, the analysis options and the data's fingerprint): the shards of one
//! experiment write the same bytes, through a temporary file of their own renamed into place, so that
//! two shards writing it at once never mix. `--merge` reads it back and needs no other argument.
//!
//! Locks. A shard never locks `<out>` as a whole; it locks each run it trains (`<out>/locks/<run>/`,
//! held from the check of its `done.json` to the writing of it), so shards of one experiment run side
//! by side and two processes never train the same run. An unsharded experiment and `--merge` lock
//! `<out>` (as before sharding existed); only they write the report. Preparing the data locks the data
//! directory, and a process that finds that lock held waits for it (`wait_lock`). The locks are those
//! of `fs::DirLock`: a holder is recognised as gone by its pid on this machine, so on a cluster where
//! shards run on several machines, prepare the data before starting them (see the README).

use super::{run_name, Arm, Experiment, DONE_FILE};
use crate::analysis::record::{DataFingerprint, RunOptions, RunRecord};
use crate::config::Config;
use crate::fs::DirLock;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The plan file in the experiment's output directory.
pub const PLAN_FILE: &str = "experiment.json";

/// How long `wait_lock` waits for a lock held by another live process.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// What an experiment is: everything `--merge` needs to find its runs and write its report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanFile {
    /// The config every run starts from (before its arm's overrides), data_dir included.
    pub base: Config,
    pub arms: Vec<Arm>,
    pub seeds: Vec<u64>,
    pub options: RunOptions,
    pub hist_windows: usize,
    /// The data the runs were trained on.
    pub data: DataFingerprint,
}

impl Experiment {
    /// Writes `<out>/experiment.json` (see the module docs).
    pub(super) fn write_plan(&self, data: &DataFingerprint) -> Result<()> {
        let plan = PlanFile {
            base: self.base.clone(),
            arms: self.arms.clone(),
            seeds: self.seeds.clone(),
            options: self.options.clone(),
            hist_windows: self.hist_windows,
            data: data.clone(),
        };
        let text = serde_json::to_string_pretty(&plan).map_err(|e| Error::Data(e.to_string()))? + "\n";
        std::fs::create_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        let path = self.out.join(PLAN_FILE);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tmp = self.out.join(format!("{PLAN_FILE}.{}-{nanos}.tmp", std::process::id()));
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(&path, e)
        })
    }

    /// The experiment whose plan `<out>/experiment.json` holds, and its data's fingerprint.
    pub fn from_plan(out: &Path) -> Result<(Experiment, DataFingerprint)> {
        let path = out.join(PLAN_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Data(format!(
                    "{} does not exist: no experiment (or shard of one) was started in {}",
                    path.display(),
                    out.display()
                ))
            } else {
                Error::io(&path, e)
            }
        })?;
        let p: PlanFile =
            serde_json::from_str(&text).map_err(|e| Error::Data(format!("{}: unreadable ({e})", path.display())))?;
        let exp = Experiment {
            base: p.base,
            arms: p.arms,
            seeds: p.seeds,
            out: out.to_path_buf(),
            options: p.options,
            hist_windows: p.hist_windows,
            plot_layer: None,
            held: Default::default(),
        };
        Ok((exp, p.data))
    }
}

impl Experiment {
    /// Train shard `i` of `n`'s unfinished runs (run k of `plan()` is shard k mod n's) into `out`,
    /// without a report. Returns the shard's records.
    pub fn run_shard(&self, i: usize, n: usize, say: &mut dyn FnMut(&str)) -> Result<Vec<RunRecord>> {
        self.validate()?;
        let fp = self.data_fingerprint()?;
        self.write_plan(&fp)?;
        let mine = self.shard_plan(i, n);
        say(&format!(
            "shard {i}/{n}: {} of the {} runs ({})",
            mine.len(),
            self.plan().len(),
            mine.iter().map(|(a, s)| run_name(&a.name, *s)).collect::<Vec<_>>().join(", ")
        ));
        self.train_runs(&mine, &fp, say)
    }

    /// The report of the finished runs of the plan in `out` (`from_plan`), naming the missing ones in
    /// it; an error if none is finished. Returns the records, the missing runs' names and the report.
    pub fn merge(
        &self,
        data: &DataFingerprint,
        say: &mut dyn FnMut(&str),
    ) -> Result<(Vec<RunRecord>, Vec<String>, PathBuf)> {
        self.validate()?;
        self.lock()?;
        let (mut records, mut missing) = (vec![], vec![]);
        for (a, s) in self.plan() {
            match self.load_done(a, s, &self.spec(a, s, data)?)? {
                Some(r) => records.push(r),
                None => missing.push(run_name(&a.name, s)),
            }
        }
        if records.is_empty() {
            return Err(Error::Data(format!(
                "no run of the experiment in {} is finished yet (none has a {DONE_FILE}); nothing to report",
                self.out.display()
            )));
        }
        let path = self.write_report(&records, missing.clone(), say)?;
        Ok((records, missing, path))
    }
}

/// `--shard i/n` → (i, n), 0 ≤ i < n.
pub fn parse_shard(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Config(format!("--shard {s}: expected i/n with 0 <= i < n, e.g. 0/4"));
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// `DirLock::acquire(dir)`, waiting (up to 10 minutes, saying so once on stderr) while another live
/// process holds it.
pub fn wait_lock(dir: &Path, what: &str) -> Result<DirLock> {
    let start = Instant::now();
    let mut said = false;
    loop {
        match DirLock::acquire(dir, what) {
            Err(Error::Locked(m)) if start.elapsed() < LOCK_WAIT => {
                if !said {
                    eprintln!("waiting for the lock on {} ({m})", dir.display());
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            r => return r,
        }
    }
}
