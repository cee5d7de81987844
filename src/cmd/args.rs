//! Argument parsing shared by the subcommands: named `--key=value` / `--key value` options and flags.

use anyhow::{bail, Context, Result};

/// `--key=value` / `--key value` options and `--flag`s, all of them named in advance.
pub struct Args {
    pub values: Vec<(String, String)>,
    pub flags: Vec<String>,
}

impl Args {
    pub fn parse(args: &[String], keys: &[&str], flags: &[&str]) -> Result<Args> {
        let mut out = Args { values: vec![], flags: vec![] };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(body) = a.strip_prefix("--") else { bail!("unexpected argument '{a}' (options start with --)") };
            let (k, v) = match body.split_once('=') {
                Some((k, v)) => (k.replace('-', "_"), Some(v.to_string())),
                None => (body.replace('-', "_"), None),
            };
            if flags.contains(&k.as_str()) && v.is_none() {
                out.flags.push(k);
            } else if keys.contains(&k.as_str()) {
                let v = match v {
                    Some(v) => v,
                    None => it.next().with_context(|| format!("--{k} needs a value"))?.clone(),
                };
                out.values.push((k, v));
            } else {
                bail!(
                    "unknown option '--{k}': expected one of {}",
                    keys.iter().chain(flags).map(|k| format!("--{k}")).collect::<Vec<_>>().join(", ")
                );
            }
        }
        Ok(out)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.values.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
    }

    pub fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("--{k}={v} is not a valid number")),
        }
    }
}

/// Size the global rayon pool (0 = one thread per core); the GEMM crate runs on the same pool.
pub fn set_threads(n: usize) -> Result<()> {
    rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("starting the thread pool")
}
