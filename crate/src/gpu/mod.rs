//! The WebGPU backend of the exact mode, through wgpu: Vulkan natively (Mesa's lavapipe
//! in the tests), the browser's WebGPU on wasm32. Kernels are the `.wgsl` files in
//! `shaders/`, integer arithmetic only, and reproduce [`crate::backend::exact`] bit for bit.
//!
//! [`GpuContext`] holds the device, the pipeline cache and the error slot: wgpu reports
//! errors asynchronously, so they are caught by error scopes (natively) and by an
//! uncaptured-error handler (everywhere), and surface as [`Error`] at the next check or
//! readback — never as a panic.

mod kernels;
mod ops;
mod profile;
mod sample;

pub use kernels::{Kernel, KernelKey};
pub use ops::{GpuAct, GpuOps, GpuWeight};
pub use profile::{KernelTime, Profile, Profiling, Timer};

use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wgpu::util::DeviceExt;

/// Environment variable that forces the emulated int8 dot product (`1`).
pub const EMULATE_DOT4_ENV: &str = "EDGEPROOF_GPU_EMULATE_DOT4";

/// The WebGPU spec's default limits: the budget every kernel is written for.
pub const MAX_BINDING: u64 = 128 << 20;
pub const MAX_BUFFER: u64 = 256 << 20;
pub const MAX_WORKGROUPS: u32 = 65_535;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuOptions {
    /// Use the emulated int8 dot product even where the adapter has `dot4I8Packed`.
    pub emulate_dot4: bool,
    /// Largest buffer bound to a kernel; weights are split into chunks of rows below it.
    /// [`MAX_BINDING`] unless a test wants many chunks of a small tensor.
    pub max_binding: u64,
}

impl Default for GpuOptions {
    fn default() -> GpuOptions {
        GpuOptions { emulate_dot4: false, max_binding: MAX_BINDING }
    }
}

impl GpuOptions {
    /// Options from the environment ([`EMULATE_DOT4_ENV`]).
    pub fn from_env() -> GpuOptions {
        GpuOptions { emulate_dot4: std::env::var(EMULATE_DOT4_ENV).is_ok_and(|v| v == "1"), ..Default::default() }
    }
}

/// The first error wgpu reported outside an error scope (or a device loss), kept until checked.
type ErrorSlot = Arc<Mutex<Option<Error>>>;

fn record(slot: &ErrorSlot, e: Error) {
    if let Ok(mut s) = slot.lock() {
        s.get_or_insert(e);
    }
}

fn from_wgpu(e: wgpu::Error) -> Error {
    match e {
        wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory(e.to_string()),
        wgpu::Error::Validation { description, .. } => Error::Gpu(description),
        wgpu::Error::Internal { description, .. } => Error::Gpu(description),
    }
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: wgpu::AdapterInfo,
    /// Whether kernels use WGSL's `dot4I8Packed` (else the emulation).
    pub dot4_packed: bool,
    /// Largest buffer bound to a kernel (at most [`MAX_BINDING`]).
    pub max_binding: u64,
    /// How dispatches are timed while a profile is recorded (`None`: made without profiling).
    pub timer: Option<Timer>,
    pipelines: RefCell<HashMap<KernelKey, wgpu::ComputePipeline>>,
    errors: ErrorSlot,
    profile: RefCell<Option<profile::Recorder>>,
}

/// The limits the kernels need, each checked against the adapter's (WebGPU defaults at most).
fn required_limits(have: &wgpu::Limits) -> Result<wgpu::Limits> {
    let mut need = wgpu::Limits::downlevel_defaults();
    need.max_storage_buffers_per_shader_stage = 8;
    need.max_storage_buffer_binding_size = MAX_BINDING;
    need.max_buffer_size = MAX_BUFFER;
    need.max_compute_workgroups_per_dimension = MAX_WORKGROUPS;
    need.max_compute_invocations_per_workgroup = 256;
    need.max_compute_workgroup_size_x = 256;
    need.max_compute_workgroup_storage_size = 16 << 10;
    let checks: [(&str, u64, u64); 7] = [
        (
            "max_storage_buffers_per_shader_stage",
            need.max_storage_buffers_per_shader_stage.into(),
            have.max_storage_buffers_per_shader_stage.into(),
        ),
        ("max_storage_buffer_binding_size", need.max_storage_buffer_binding_size, have.max_storage_buffer_binding_size),
        ("max_buffer_size", need.max_buffer_size, have.max_buffer_size),
        (
            "max_compute_workgroups_per_dimension",
            need.max_compute_workgroups_per_dimension.into(),
            have.max_compute_workgroups_per_dimension.into(),
        ),
        (
            "max_compute_invocations_per_workgroup",
            need.max_compute_invocations_per_workgroup.into(),
            have.max_compute_invocations_per_workgroup.into(),
        ),
        (
            "max_compute_workgroup_size_x",
            need.max_compute_workgroup_size_x.into(),
            have.max_compute_workgroup_size_x.into(),
        ),
        (
            "max_compute_workgroup_storage_size",
            need.max_compute_workgroup_storage_size.into(),
            have.max_compute_workgroup_storage_size.into(),
        ),
    ];
    for (name, need, have) in checks {
        if have < need {
            return Err(Error::MissingLimit { name: name.into(), need, have });
        }
    }
    // Everything else: the adapter's own values where they are lower than the downlevel defaults.
    Ok(need.using_resolution(have.clone()).using_alignment(have.clone()))
}

impl GpuContext {
    /// Request an adapter and a device with the limits the kernels need.
    pub async fn new(opts: GpuOptions) -> Result<GpuContext> {
        GpuContext::new_profiled(opts, Profiling::Off).await
    }

    /// [`GpuContext::new`] able to profile (see [`GpuContext::start_profile`]): with
    /// `TIMESTAMP_QUERY` requested where `profiling` is `Auto` and the adapter has it.
    pub async fn new_profiled(opts: GpuOptions, profiling: Profiling) -> Result<GpuContext> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let limits = required_limits(&adapter.limits())?;
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let timer = match profiling {
            Profiling::Off => None,
            Profiling::Auto if timestamps => Some(Timer::Timestamps),
            // The wall clock waits on the device after each dispatch, which the browser cannot.
            _ if cfg!(target_arch = "wasm32") => {
                return Err(Error::MissingFeature("TIMESTAMP_QUERY (for profiling in the browser)".into()))
            }
            _ => Some(Timer::WallClock),
        };
        let features = match timer {
            Some(Timer::Timestamps) => wgpu::Features::TIMESTAMP_QUERY,
            _ => wgpu::Features::empty(),
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("edgeproof"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("request_device: {e}")))?;
        let errors: ErrorSlot = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&errors);
        device.on_uncaptured_error(Arc::new(move |e| record(&slot, from_wgpu(e))));
        let slot = Arc::clone(&errors);
        device.set_device_lost_callback(move |reason, msg| {
            record(&slot, Error::DeviceLost(format!("{reason:?}: {msg}")));
        });
        let packed = instance.wgsl_language_features().contains(wgpu::WgslLanguageFeatures::Packed4x8IntegerDotProduct);
        Ok(GpuContext {
            device,
            queue,
            adapter: adapter.get_info(),
            dot4_packed: packed && !opts.emulate_dot4,
            max_binding: opts.max_binding.min(MAX_BINDING),
            timer,
            pipelines: RefCell::new(HashMap::new()),
            errors,
            profile: RefCell::new(None),
        })
    }

    /// [`GpuContext::new`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: GpuOptions) -> Result<GpuContext> {
        pollster::block_on(GpuContext::new(opts))
    }

    /// [`GpuContext::new_profiled`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_profiled_blocking(opts: GpuOptions, profiling: Profiling) -> Result<GpuContext> {
        pollster::block_on(GpuContext::new_profiled(opts, profiling))
    }

    /// The first error reported since the last check, if any.
    pub fn check(&self) -> Result<()> {
        match self.errors.lock().map(|mut s| s.take()) {
            Ok(Some(e)) => Err(e),
            Ok(None) => Ok(()),
            Err(_) => Err(Error::Gpu("error slot poisoned".into())),
        }
    }

    /// Keep `e` to be returned by the next [`GpuContext::check`] (ops of the `Ops` trait return no `Result`).
    pub(crate) fn defer(&self, e: Error) {
        record(&self.errors, e);
    }

    /// Run `f` inside validation and out-of-memory error scopes; natively the scopes are
    /// awaited here, so the error is attributed to `f` (`on_validation` names it). In the
    /// browser they cannot be awaited synchronously: errors reach the uncaptured handler.
    fn scoped<T>(&self, on_validation: impl FnOnce(String) -> Error, f: impl FnOnce() -> T) -> Result<T> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let t = f();
            let val = pollster::block_on(val.pop());
            let oom = pollster::block_on(oom.pop());
            if let Some(e) = oom {
                return Err(from_wgpu(e));
            }
            match val {
                Some(wgpu::Error::Validation { description, .. }) => Err(on_validation(description)),
                Some(e) => Err(from_wgpu(e)),
                None => Ok(t),
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = on_validation;
            Ok(f())
        }
    }

    fn key(&self, kernel: Kernel) -> KernelKey {
        KernelKey { kernel, dot4_packed: self.dot4_packed }
    }

    /// The kernels compiled so far (each at its first dispatch).
    pub fn kernels(&self) -> Vec<KernelKey> {
        self.pipelines.borrow().keys().copied().collect()
    }

    /// The pipeline of `kernel`, compiled once per key.
    pub fn pipeline(&self, kernel: Kernel) -> Result<wgpu::ComputePipeline> {
        let key = self.key(kernel);
        if let Some(p) = self.pipelines.borrow().get(&key) {
            return Ok(p.clone());
        }
        let label = key.to_string();
        let source = key.source();
        let constants = key.constants();
        let p = self.scoped(
            |msg| Error::Shader { kernel: label.clone(), msg },
            || {
                let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
                self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: &constants,
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                })
            },
        )?;
        self.pipelines.borrow_mut().insert(key, p.clone());
        Ok(p)
    }

    fn fits(&self, label: &str, size: u64) -> Result<()> {
        if size > self.max_binding {
            return Err(Error::MissingLimit {
                name: format!("max_storage_buffer_binding_size ({label})"),
                need: size,
                have: self.max_binding,
            });
        }
        Ok(())
    }

    /// A storage buffer of `bytes` (at least 16), checked against the WebGPU default limits.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.max(16).next_multiple_of(4);
        self.fits(label, size)?;
        self.scoped(Error::Gpu, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A storage buffer larger than one binding (up to the WebGPU default of 256 MiB per
    /// buffer), bound in ranges of rows.
    pub fn storage_large(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.max(16).next_multiple_of(4);
        if size > MAX_BUFFER {
            return Err(Error::MissingLimit {
                name: format!("max_buffer_size ({label})"),
                need: size,
                have: MAX_BUFFER,
            });
        }
        self.scoped(Error::Gpu, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A storage buffer holding `data` (padded to at least 16 bytes, a multiple of 4).
    pub fn storage_init(&self, label: &str, data: &[u8]) -> Result<wgpu::Buffer> {
        let size = (data.len() as u64).max(16).next_multiple_of(4);
        self.fits(label, size)?;
        let mut bytes = data.to_vec();
        bytes.resize(size as usize, 0);
        self.scoped(Error::Gpu, || {
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            })
        })
    }

    /// Record one dispatch of `kernel` with a uniform parameter block (binding 0) and
    /// storage buffers (bindings 1..).
    pub fn dispatch(
        &self,
        enc: &mut wgpu::CommandEncoder,
        kernel: Kernel,
        params: &[u32],
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let res: Vec<wgpu::BindingResource> = buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.dispatch_bound(enc, kernel, params, res, groups)
    }

    /// [`GpuContext::dispatch`] with bindings that may be ranges of buffers.
    pub fn dispatch_bound(
        &self,
        enc: &mut wgpu::CommandEncoder,
        kernel: Kernel,
        params: &[u32],
        buffers: Vec<wgpu::BindingResource>,
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.iter().any(|&g| g > MAX_WORKGROUPS) {
            return Err(Error::MissingLimit {
                name: format!("max_compute_workgroups_per_dimension ({kernel})"),
                need: groups.iter().copied().max().unwrap_or(0).into(),
                have: MAX_WORKGROUPS.into(),
            });
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let pipeline = self.pipeline(kernel)?;
        // Uniform blocks are sized in multiples of 16 bytes.
        let mut words = params.to_vec();
        words.resize(params.len().next_multiple_of(4).max(4), 0);
        let ubuf = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::cast_slice(&words),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: ubuf.as_entire_binding() }];
        for (i, resource) in buffers.into_iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
        }
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let timing = self.profile_begin(enc, self.key(kernel))?;
        {
            let timestamp_writes = timing.as_ref().and_then(|t| t.writes());
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.profile_end(enc, timing)
    }

    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }

    /// Read `bytes` from the start of `buf`, once the work submitted before is done.
    pub async fn read_async(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.max(4).next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.encoder();
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let mapped = Mapped::default();
        let state = Arc::clone(&mapped.0);
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            if let Ok(mut s) = state.lock() {
                s.done = Some(r);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
        // Natively the callback runs inside poll; in the browser the event loop runs it.
        #[cfg(not(target_arch = "wasm32"))]
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("poll: {e}")))?;
        let mapped = mapped.await;
        self.check()?;
        mapped.map_err(|e| Error::Gpu(format!("map: {e}")))?;
        let view = staging.get_mapped_range(..).map_err(|e| Error::Gpu(format!("map: {e}")))?;
        let out = view[..bytes as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// [`GpuContext::read_async`], blocking (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_async(buf, bytes))
    }
}

#[derive(Default)]
struct MapState {
    done: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<std::task::Waker>,
}

/// The end of a `map_async`, as a future.
#[derive(Default)]
struct Mapped(Arc<Mutex<MapState>>);

impl std::future::Future for Mapped {
    type Output = std::result::Result<(), wgpu::BufferAsyncError>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Ok(mut s) = self.0.lock() else {
            return std::task::Poll::Ready(Err(wgpu::BufferAsyncError));
        };
        match s.done.take() {
            Some(r) => std::task::Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}
