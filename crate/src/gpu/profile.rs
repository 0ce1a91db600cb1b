//! Per-kernel times (`edgeproof bench --profile`): between [`GpuContext::start_profile`] and
//! [`GpuContext::take_profile`], every dispatch is timed, by timestamp queries around its
//! compute pass where the device has `TIMESTAMP_QUERY`, else by the wall clock around a
//! submission of that pass alone (everything recorded before it is submitted and waited for
//! first). Either way the same passes run in the same order: results are unchanged.

use super::{GpuContext, KernelKey};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

/// Whether a context can profile, and how.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profiling {
    /// No profiling: no feature requested, nothing recorded.
    #[default]
    Off,
    /// Timestamp queries where the adapter has `TIMESTAMP_QUERY`, else the wall clock.
    Auto,
    /// The wall clock, even where timestamp queries exist (native only: it waits on the device).
    WallClock,
}

/// How a profile was timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Timestamp queries at the beginning and end of each dispatch's compute pass.
    Timestamps,
    /// Wall clock around a submission and wait per dispatch (includes submission overhead).
    WallClock,
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timer::Timestamps => write!(f, "GPU timestamp queries around each compute pass"),
            Timer::WallClock => write!(f, "wall clock, one submission and wait per dispatch (no TIMESTAMP_QUERY)"),
        }
    }
}

/// One kernel's share of a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The [`KernelKey`] label, e.g. `matmul[Q4_1][dot4=packed]`.
    pub kernel: String,
    pub dispatches: u32,
    pub ns: f64,
}

/// The dispatches recorded between `start_profile` and `take_profile`, per kernel, slowest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub timer: Timer,
    pub kernels: Vec<KernelTime>,
}

impl Profile {
    pub fn total_ns(&self) -> f64 {
        self.kernels.iter().map(|k| k.ns).sum()
    }
}

impl fmt::Display for Profile {
    /// A markdown table: kernel, dispatches, total time, share.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total_ns();
        writeln!(f, "| kernel | dispatches | time ms | share |")?;
        writeln!(f, "| --- | ---: | ---: | ---: |")?;
        for k in &self.kernels {
            let share = if total > 0.0 { k.ns / total * 100.0 } else { 0.0 };
            writeln!(f, "| {} | {} | {:.2} | {share:.1}% |", k.kernel, k.dispatches, k.ns / 1e6)?;
        }
        let n: u32 = self.kernels.iter().map(|k| k.dispatches).sum();
        write!(f, "| total | {n} | {:.2} | 100% |", total / 1e6)
    }
}

/// Timestamp queries per query set (WebGPU's maximum): two per dispatch.
const QUERIES_PER_SET: u32 = wgpu::QUERY_SET_MAX_QUERIES;

/// A profile being recorded.
#[derive(Default)]
pub(super) struct Recorder {
    /// Each dispatch's kernel, in order.
    kernels: Vec<KernelKey>,
    /// Timestamps: the query sets, filled in order.
    sets: Vec<wgpu::QuerySet>,
    /// Wall clock: each dispatch's time.
    wall_ns: Vec<f64>,
}

/// How one dispatch is being timed.
pub(super) enum Timing {
    Query(wgpu::QuerySet, u32),
    Wall(Instant),
}

impl Timing {
    pub(super) fn writes(&self) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        match self {
            Timing::Query(set, i) => Some(wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: Some(*i),
                end_of_pass_write_index: Some(*i + 1),
            }),
            Timing::Wall(_) => None,
        }
    }
}

impl GpuContext {
    /// Time every dispatch from now on, until [`GpuContext::take_profile`] (dropping a
    /// profile already started). The context must have been made with profiling.
    pub fn start_profile(&self) -> Result<()> {
        if self.timer.is_none() {
            return Err(Error::InvalidArgument("this GPU context was made without profiling".into()));
        }
        *self.profile.borrow_mut() = Some(Recorder::default());
        Ok(())
    }

    /// Submit what `enc` holds and wait for the device (wall-clock timing).
    fn finish_and_wait(&self, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        let done = std::mem::replace(enc, self.encoder());
        self.submit(done);
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("poll: {e}")))?;
        Ok(())
    }

    /// Called before a dispatch's compute pass is recorded into `enc`: its timing, if profiling.
    pub(super) fn profile_begin(&self, enc: &mut wgpu::CommandEncoder, key: KernelKey) -> Result<Option<Timing>> {
        let mut slot = self.profile.borrow_mut();
        let Some(rec) = slot.as_mut() else { return Ok(None) };
        match self.timer {
            Some(Timer::Timestamps) => {
                let q = 2 * rec.kernels.len() as u32;
                if (q / QUERIES_PER_SET) as usize >= rec.sets.len() {
                    let set = self.scoped(Error::Gpu, || {
                        self.device.create_query_set(&wgpu::QuerySetDescriptor {
                            label: Some("profile"),
                            ty: wgpu::QueryType::Timestamp,
                            count: QUERIES_PER_SET,
                        })
                    })?;
                    rec.sets.push(set);
                }
                rec.kernels.push(key);
                let set = rec.sets[(q / QUERIES_PER_SET) as usize].clone();
                Ok(Some(Timing::Query(set, q % QUERIES_PER_SET)))
            }
            Some(Timer::WallClock) => {
                rec.kernels.push(key);
                // The work recorded before this dispatch is not part of its time.
                drop(slot);
                self.finish_and_wait(enc)?;
                Ok(Some(Timing::Wall(Instant::now())))
            }
            None => Ok(None),
        }
    }

    /// Called after the dispatch's compute pass was recorded.
    pub(super) fn profile_end(&self, enc: &mut wgpu::CommandEncoder, timing: Option<Timing>) -> Result<()> {
        if let Some(Timing::Wall(t0)) = timing {
            self.finish_and_wait(enc)?;
            let ns = t0.elapsed().as_secs_f64() * 1e9;
            if let Some(rec) = self.profile.borrow_mut().as_mut() {
                rec.wall_ns.push(ns);
            }
        }
        Ok(())
    }

    /// Stop profiling and sum the times per kernel. The profiled work must have been
    /// submitted (a readback submits it, or `GpuOps::flush`).
    pub async fn take_profile_async(&self) -> Result<Profile> {
        let rec = self.profile.borrow_mut().take();
        let (Some(rec), Some(timer)) = (rec, self.timer) else {
            return Err(Error::InvalidArgument("no profile was started".into()));
        };
        let ns = match timer {
            Timer::WallClock => rec.wall_ns,
            Timer::Timestamps => self.read_timestamps(&rec).await?,
        };
        if ns.len() != rec.kernels.len() {
            return Err(Error::Gpu(format!("{} timings for {} dispatches", ns.len(), rec.kernels.len())));
        }
        let mut kernels: Vec<KernelTime> = Vec::new();
        let mut at: HashMap<KernelKey, usize> = HashMap::new();
        for (key, t) in rec.kernels.iter().zip(ns) {
            let i = *at.entry(*key).or_insert_with(|| {
                kernels.push(KernelTime { kernel: key.to_string(), dispatches: 0, ns: 0.0 });
                kernels.len() - 1
            });
            kernels[i].dispatches += 1;
            kernels[i].ns += t;
        }
        kernels.sort_by(|a, b| b.ns.total_cmp(&a.ns));
        Ok(Profile { timer, kernels })
    }

    /// [`GpuContext::take_profile_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn take_profile(&self) -> Result<Profile> {
        pollster::block_on(self.take_profile_async())
    }

    /// Each dispatch's time from its pair of timestamps: the query sets resolved into one
    /// buffer, read back once.
    async fn read_timestamps(&self, rec: &Recorder) -> Result<Vec<f64>> {
        let n = 2 * rec.kernels.len() as u64;
        if n == 0 {
            return Ok(Vec::new());
        }
        let set_bytes = QUERIES_PER_SET as u64 * wgpu::QUERY_SIZE as u64;
        let resolved = self.scoped(Error::Gpu, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile"),
                size: rec.sets.len() as u64 * set_bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        })?;
        let mut enc = self.encoder();
        for (i, set) in rec.sets.iter().enumerate() {
            let used = (n - i as u64 * QUERIES_PER_SET as u64).min(QUERIES_PER_SET as u64) as u32;
            enc.resolve_query_set(set, 0..used, &resolved, i as u64 * set_bytes);
        }
        self.submit(enc);
        let bytes = self.read_async(&resolved, n * wgpu::QUERY_SIZE as u64).await?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let period = self.queue.get_timestamp_period() as f64;
        Ok(ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period).collect())
    }
}
