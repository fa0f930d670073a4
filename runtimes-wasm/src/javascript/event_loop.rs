//! The JavaScript event loop, run by the host.
//!
//! The reactor has no event loop of its own, so the host runs one: it drains the promise jobs,
//! then calls the guest's `__soulbox_tick` (defined by `timers.js`), which runs the earliest
//! due timer or says how long to wait for it; the host sleeps that long (an async sleep, during
//! which the worker pool counts the job as waiting, unless the wait is short: see `sleep`) and
//! goes round again, until no timer keeps the loop alive. As in Node, every promise job queued by a timer runs before the next timer.
//!
//! How it ends:
//! - a script ([`Stop::WhenIdle`]) runs until no timer is left, as Node does; the guest's
//!   deadline stops one that never ends (an endless `setInterval`), as any other guest code;
//! - a context's cell ([`Stop::BeforeDeadline`]) waits for its timeouts and immediates, while
//!   intervals fire but keep nothing waiting on their own, and it stops waiting before its
//!   deadline: timers still pending then stay set in the context and fire during a later
//!   cell, as in a notebook;
//! - a timer callback that throws ends the loop: its error is printed on stderr, and a script
//!   exits with status 1;
//! - a promise rejected with no handler by the end of a turn (its jobs drained) is printed on
//!   stderr (`rejections.rs`); it ends a script with status 1, as in Node, and a cell goes on.
//!
//! `fetch` (for a guest with a network) queues its requests in the guest; each round the host
//! takes the queue (`__soulbox_fetch_take`) and makes the requests on this worker's runtime,
//! concurrently with each other and with the timers. A request in flight keeps the loop alive
//! as a timer does; each answer settles its promise (`__soulbox_fetch_settle`) as soon as it
//! arrives. A request the guest aborts is named in the next take: the host drops it (its
//! connection closes) and it keeps the loop alive no longer. A cell that stops waiting before
//! its deadline rejects the requests still in flight.

use super::rejections::Rejections;
use super::{Value, eval, eval_string, free, malloc, qjs_context, run_pending_jobs};
use crate::egress::{FetchAnswer, FetchRequest, GuestNetwork};
use soulbox_host_api::GuestState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::{AbortHandle, JoinSet};
use wasmtime::{Instance, Store};

/// How long before a cell's deadline its loop stops waiting for timers.
pub(crate) const CELL_DEADLINE_MARGIN: Duration = Duration::from_millis(100);
/// The longest wait for a timer spent in a blocking, precise sleep (see [`sleep`]).
const PRECISE_WAIT: Duration = Duration::from_millis(2);

/// When the loop stops (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stop {
    /// When no referenced timer is left (a script).
    WhenIdle,
    /// When no referenced timeout or immediate is left, or before `deadline` (a context's
    /// cell): pending timers stay set.
    BeforeDeadline(Instant),
}

/// What one tick did.
enum Tick {
    Ran,
    Wait(Duration),
    Idle,
    Threw,
}

/// Runs the event loop; false if a promise job or a timer threw, or (a script) a rejection went
/// unhandled (the error is printed).
/// `fetch`'s requests go through `network` (a guest without one never queues any).
pub(crate) async fn run(
    store: &mut Store<GuestState>,
    instance: &Instance,
    stop: Stop,
    network: Option<&Arc<GuestNetwork>>,
) -> wasmtime::Result<bool> {
    let keep_intervals = matches!(stop, Stop::WhenIdle);
    let context = qjs_context(store, instance).await?;
    let ticks = [
        TickCall::new(store, instance, &format!("__soulbox_tick({keep_intervals}, false)")).await?,
        TickCall::new(store, instance, &format!("__soulbox_tick({keep_intervals}, true)")).await?,
    ];
    let name = malloc(store, instance, b"<timers>\0").await?;
    let eval_tick = instance.get_typed_func::<(i32, i32, i32, i32, i32), i64>(&mut *store, "soulbox_js_eval")?;
    let rejections = Rejections::find(store, instance).await?;
    let mut in_flight = InFlight::default();
    let mut ok = true;
    loop {
        ok &= run_pending_jobs(store, instance).await?;
        if rejections.report(store, instance).await? && matches!(stop, Stop::WhenIdle) {
            ok = false;
            break;
        }
        if let Some(network) = network {
            take_requests(store, instance, network, &mut in_flight).await?;
        }
        if let Stop::BeforeDeadline(deadline) = stop
            && Instant::now() + CELL_DEADLINE_MARGIN >= deadline
        {
            break;
        }
        let tick_call = &ticks[usize::from(!in_flight.is_empty())];
        let value = eval_tick.call_async(&mut *store, (context, tick_call.source, tick_call.length, name, 0)).await?;
        let wait = match tick(value) {
            Tick::Ran => continue,
            Tick::Idle if in_flight.is_empty() => break,
            Tick::Idle => None,
            Tick::Threw => {
                let dump = instance.get_typed_func::<i32, ()>(&mut *store, "soulbox_dump_error")?;
                dump.call_async(&mut *store, context).await?;
                ok = false;
                break;
            }
            Tick::Wait(wait) => Some(wait),
        };
        let wait = match stop {
            Stop::BeforeDeadline(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now()).saturating_sub(CELL_DEADLINE_MARGIN);
                if wait.is_some_and(|w| w >= left) && in_flight.is_empty() {
                    break;
                }
                Some(wait.map_or(left, |w| w.min(left)))
            }
            Stop::WhenIdle => wait,
        };
        if in_flight.is_empty() {
            sleep(wait.unwrap_or_default()).await;
            continue;
        }
        let answered = match wait {
            Some(wait) => tokio::time::timeout(wait, in_flight.join_next()).await.ok().flatten(),
            None => in_flight.join_next().await,
        };
        if let Some(Ok((id, answer))) = answered {
            in_flight.ids.remove(&id);
            settle(store, instance, id, &answer).await?;
        }
    }
    // Only a cell stops with requests in flight: they are dropped and their promises reject.
    in_flight.tasks.abort_all();
    for id in std::mem::take(&mut in_flight.ids).into_keys() {
        settle(store, instance, id, &FetchAnswer::failed("the cell ended before the response arrived")).await?;
    }
    for tick_call in ticks {
        free(store, instance, tick_call.source).await?;
    }
    free(store, instance, name).await?;
    Ok(ok)
}

/// One way of calling `__soulbox_tick`, its source in guest memory for the whole loop.
struct TickCall {
    source: i32,
    length: i32,
}

impl TickCall {
    async fn new(store: &mut Store<GuestState>, instance: &Instance, code: &str) -> wasmtime::Result<Self> {
        let source = malloc(store, instance, format!("{code}\0").as_bytes()).await?;
        Ok(TickCall { source, length: i32::try_from(code.len())? })
    }
}

/// The guest's requests being made, by id.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<(u64, FetchAnswer)>,
    ids: std::collections::BTreeMap<u64, AbortHandle>,
}

impl InFlight {
    fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    async fn join_next(&mut self) -> Option<Result<(u64, FetchAnswer), tokio::task::JoinError>> {
        self.tasks.join_next().await
    }
}

/// What `__soulbox_fetch_take` returns.
#[derive(serde::Deserialize)]
struct Taken {
    start: Vec<(u64, serde_json::Value)>,
    abort: Vec<u64>,
}

/// Takes the requests `fetch` queued and starts them, and drops those the guest aborted.
async fn take_requests(
    store: &mut Store<GuestState>,
    instance: &Instance,
    network: &Arc<GuestNetwork>,
    in_flight: &mut InFlight,
) -> wasmtime::Result<()> {
    let Some(taken) = eval_string(store, instance, "__soulbox_fetch_take()").await? else { return Ok(()) };
    let taken: Taken = serde_json::from_slice(&taken)?;
    for id in taken.abort {
        if let Some(request) = in_flight.ids.remove(&id) {
            request.abort();
        }
    }
    for (id, request) in taken.start {
        let network = Arc::clone(network);
        let handle = in_flight.tasks.spawn(async move {
            let answer = match serde_json::from_value::<FetchRequest>(request) {
                Ok(request) => network.fetch(request).await,
                Err(e) => FetchAnswer::failed(format!("malformed request from fetch: {e}")),
            };
            (id, answer)
        });
        in_flight.ids.insert(id, handle);
    }
    Ok(())
}

/// Settles request `id`'s promise with `answer` (a JSON object is a JavaScript expression).
async fn settle(
    store: &mut Store<GuestState>,
    instance: &Instance,
    id: u64,
    answer: &FetchAnswer,
) -> wasmtime::Result<()> {
    let answer = String::from_utf8(answer.to_json())?;
    eval(store, instance, &format!("__soulbox_fetch_settle({id}, {answer})")).await?;
    Ok(())
}

/// Waits `wait` for the next timer. tokio's timers count whole milliseconds and round up, so
/// a short wait (a `setTimeout(f, 0)` is due in 1 ms) would take twice as long as asked: waits
/// up to [`PRECISE_WAIT`] block the worker thread in the OS's sleep instead, which keeps to
/// tens of microseconds; longer ones sleep asynchronously (the worker pool counts the job as
/// waiting and may run another meanwhile).
async fn sleep(wait: Duration) {
    if wait <= PRECISE_WAIT {
        std::thread::sleep(wait);
    } else {
        tokio::time::sleep(wait).await;
    }
}

/// Reads `__soulbox_tick`'s answer: 0 ran a timer, a positive number of microseconds to wait,
/// -1 idle; an exception if the timer threw.
fn tick(value: i64) -> Tick {
    match Value::decode(value) {
        Value::Int(0) => Tick::Ran,
        Value::Int(us) if us > 0 => Tick::Wait(Duration::from_micros(us.unsigned_abs().into())),
        Value::Int(_) => Tick::Idle,
        // The tick returns only integers (or throws): anything else is a broken guest.
        Value::Threw | Value::Other => Tick::Threw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_decode_from_nan_boxed_values() {
        let int = |n: i32| i64::from(n as u32);
        assert!(matches!(tick(int(0)), Tick::Ran));
        assert!(matches!(tick(int(-1)), Tick::Idle));
        assert!(matches!(tick(int(25)), Tick::Wait(d) if d == Duration::from_micros(25)));
        assert!(matches!(tick(6_i64 << 32), Tick::Threw));
    }
}
