//! Executing a run's plan: record only (wait for the duration), a timed schedule (each fault
//! applied at its offset from the plan's start and reverted after its `duration`), or an
//! experiment (handed to [`crate::experiment::run`]).

use std::time::Duration;

use monitor::Verdict;

use crate::compose::ProjectState;
use crate::experiment;
use crate::faults::FaultRequest;
use crate::plan::{PlanContext, PlanResult};
use crate::scenario::{Plan, Resolved, ScheduledFault};
use crate::sink::now_ns;

/// The fault request of a schedule entry; `intended_ns` is when the schedule wants it (UTC ns).
pub fn schedule_request(f: &ScheduledFault, intended_ns: i64) -> FaultRequest {
    FaultRequest {
        action: f.action.clone(),
        args: f
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        target: f.target.clone(),
        duration: f.duration,
        experiment: None,
        step: None,
        intended_ns,
    }
}

/// Runs the plan: record only, a timed schedule, or an experiment.
pub async fn execute_plan(
    mut ctx: PlanContext,
    resolved: &Resolved,
    compiled: Option<experiment::Compiled>,
    state: &ProjectState,
) -> PlanResult {
    match &resolved.plan {
        Plan::RecordOnly => {
            ctx.progress.set("recording");
            let d = resolved.duration.unwrap_or(resolved.time_limit);
            tokio::time::sleep(d).await;
            PlanResult::default()
        }
        Plan::Schedule(faults) => run_schedule(&ctx, faults, resolved.duration).await,
        Plan::Experiment { name, settle, .. } => {
            let Some(compiled) = compiled else {
                return PlanResult::failed(Some(Verdict::Inconclusive), "experiment not compiled");
            };
            tokio::time::sleep(*settle).await;
            let live = ctx.live.take();
            experiment::run(&ctx, compiled, name, live, state).await
        }
    }
}

/// Applies each fault at its offset from `ctx.start`, reverts the timed ones after their
/// duration, and records until `duration` (default: 2 s after the last fault ended).
async fn run_schedule(
    ctx: &PlanContext,
    faults: &[ScheduledFault],
    duration: Option<Duration>,
) -> PlanResult {
    let mut last_end = Duration::ZERO;
    let mut reverts = Vec::new();
    // the wall-clock time of `ctx.start`, the instant the offsets count from
    let base_ns = now_ns() - i64::try_from(ctx.start.elapsed().as_nanos()).unwrap_or(0);
    for f in faults {
        let Some(inj) = ctx.injector.clone() else {
            return PlanResult::failed(
                None,
                format!(
                    "fault injector unavailable: {}",
                    ctx.injector_error.clone().unwrap_or_default()
                ),
            );
        };
        let due = ctx.start + f.at;
        ctx.progress.set(format!(
            "waiting for fault #{} ({}) at {:?}",
            f.index, f.action, f.at
        ));
        tokio::time::sleep_until(due.into()).await;
        ctx.progress.set(format!("fault #{} {}", f.index, f.action));
        let intended = base_ns + i64::try_from(f.at.as_nanos()).unwrap_or(i64::MAX);
        let req = schedule_request(f, intended);
        let applied = inj.lock().await.apply(&req).await;
        match applied {
            Ok(id) => {
                if let Some(d) = f.duration {
                    last_end = last_end.max(f.at + d);
                    let inj2 = inj.clone();
                    reverts.push(tokio::spawn(async move {
                        tokio::time::sleep_until((due + d).into()).await;
                        inj2.lock().await.revert(id).await;
                    }));
                } else {
                    last_end = last_end.max(f.at);
                }
            }
            Err(e) => {
                return PlanResult::failed(None, format!("fault #{} `{}`: {e}", f.index, f.action));
            }
        }
    }
    for r in reverts {
        let _ = r.await;
    }
    let until = duration.unwrap_or(last_end + Duration::from_secs(2));
    ctx.progress.set("recording");
    tokio::time::sleep_until((ctx.start + until).into()).await;
    PlanResult::default()
}
