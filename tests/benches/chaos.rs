//! `make chaos`: the full chaos plan against the release binaries (see `tests/chaos/mod.rs`).
//! Prints the figures and writes them to `target/chaos/report.md` and `report.json`; exits 1
//! when an accepted event was lost.
//!
//! `CHAOS_CLUSTER=1` (`make chaos-cluster`) runs it on a 3-node JetStream cluster with every
//! stream at replicas 3. `CHAOS_MINUTES` shortens or lengthens the load (11 by default; the whole run then takes
//! about 14 minutes: the drain after healing, counted at four destinations, takes a few).

#[path = "../chaos/mod.rs"]
mod chaos;

use std::{path::PathBuf, time::Duration};

fn main() {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let mut plan = chaos::Plan::full(target.join("release"));
    plan.cluster = std::env::var("CHAOS_CLUSTER").is_ok_and(|v| v == "1");
    if let Some(minutes) = std::env::var("CHAOS_MINUTES")
        .ok()
        .and_then(|m| m.parse::<f64>().ok())
    {
        let scale = minutes * 60.0 / plan.load_for.as_secs_f64();
        plan.load_for = Duration::from_secs_f64(minutes * 60.0);
        for (_, length) in &mut plan.outages {
            *length = length.mul_f64(scale);
        }
    }
    let plan_cluster = plan.cluster;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let report = runtime.block_on(chaos::run(plan));
    let markdown = report.markdown();
    println!("{markdown}");
    let out = target.join(if plan_cluster {
        "chaos-cluster"
    } else {
        "chaos"
    });
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("report.md"), &markdown).unwrap();
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(&report.json()).unwrap(),
    )
    .unwrap();
    if !report.secret_leaks.is_empty() {
        eprintln!("SECRETS LEAKED: {:?}", report.secret_leaks);
        std::process::exit(1);
    }
    if report.lost > 0 {
        eprintln!(
            "LOST {} accepted events, e.g. {:?}",
            report.lost,
            &report.missing[..report.missing.len().min(10)]
        );
        std::process::exit(1);
    }
}
