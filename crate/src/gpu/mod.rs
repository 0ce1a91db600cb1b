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
mod weights;

pub use kernels::{Kernel, KernelKey};
pub use ops::{GpuAct, GpuOps, MAX_SEGMENTS};
pub use profile::{KernelTime, Profile, Profiling, Timer};
pub use weights::{stack, stack_products, Chunk, GpuWeight};

use crate::error::{Error, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Environment variable that forces the emulated int8 dot product (`1`).
pub const EMULATE_DOT4_ENV: &str = "EDGEPROOF_GPU_EMULATE_DOT4";
/// Environment variable that forces split-K matrix products on (`1`) or off (`0`).
pub const SPLIT_K_ENV: &str = "EDGEPROOF_GPU_SPLIT_K";

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
    /// Split each matrix product's blocks over several invocations per output (`None`: on
    /// every adapter but a CPU one). The results are the same bits either way.
    pub split_k: Option<bool>,
}

impl Default for GpuOptions {
    fn default() -> GpuOptions {
        GpuOptions { emulate_dot4: false, max_binding: MAX_BINDING, split_k: None }
    }
}

impl GpuOptions {
    /// Options from the environment ([`EMULATE_DOT4_ENV`], [`SPLIT_K_ENV`]).
    pub fn from_env() -> GpuOptions {
        GpuOptions {
            emulate_dot4: std::env::var(EMULATE_DOT4_ENV).is_ok_and(|v| v == "1"),
            split_k: std::env::var(SPLIT_K_ENV).ok().map(|v| v == "1"),
            ..Default::default()
        }
    }
}

/// The browser's `GPUAdapter.info` as "vendor architecture device description" (the parts it
/// gives): wgpu's WebGPU backend copies only the description, which browsers often leave
/// empty, and receipts record the adapter. Read through `Reflect` from a second
/// `requestAdapter` with the same power preference (web-sys's WebGPU bindings are unstable).
#[cfg(target_arch = "wasm32")]
async fn browser_adapter_name() -> Option<String> {
    use wasm_bindgen::JsCast;
    let get = |v: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(v, &k.into()).ok();
    let gpu = get(&get(&js_sys::global(), "navigator")?, "gpu")?;
    let request: js_sys::Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let opts = js_sys::Object::new();
    js_sys::Reflect::set(&opts, &"powerPreference".into(), &"high-performance".into()).ok()?;
    let promise: js_sys::Promise = request.call1(&gpu, &opts).ok()?.dyn_into().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let info = get(&adapter, "info")?;
    let parts: Vec<String> = ["vendor", "architecture", "device", "description"]
        .iter()
        .filter_map(|k| get(&info, k)?.as_string())
        .filter(|s| !s.is_empty())
        .collect();
    Some(parts.join(" "))
}

/// Free storage buffers by size.
type Pool = RefCell<HashMap<u64, Vec<wgpu::Buffer>>>;

/// Buffers above this size are not kept for reuse (prefill logits, say): rare, and large.
const POOL_MAX: u64 = 16 << 20;

/// Distinct uniform parameter blocks kept before the cache is emptied.
const UNIFORMS_MAX: usize = 4096;

/// Bind groups kept before the cache is emptied.
const BINDS_MAX: usize = 8192;

/// A bind group by pipeline and bound ranges (buffer, offset, size), the uniform block first.
type BindKey = (KernelKey, Vec<(wgpu::Buffer, u64, Option<u64>)>);

/// A storage buffer. Those made by [`GpuContext::storage`] go back to the context's pool when
/// dropped and are handed out again for the same size, so that a decode step reuses the
/// buffers of the step before instead of creating its own. That is safe while commands
/// recorded earlier still use one: pooled buffers are only written by GPU commands, which
/// run in queue order, never by `write_buffer` or a mapping.
pub struct Buf {
    buf: wgpu::Buffer,
    pool: Option<Rc<Pool>>,
}

impl std::ops::Deref for Buf {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buf
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            if let Ok(mut p) = pool.try_borrow_mut() {
                p.entry(self.buf.size()).or_default().push(self.buf.clone());
            }
        }
    }
}

impl Buf {
    /// A buffer that is not returned to a pool (weights, uploads).
    pub fn owned(buf: wgpu::Buffer) -> Buf {
        Buf { buf, pool: None }
    }
}

/// The first error wgpu reported outside an error scope (or a device loss), kept until checked.
type ErrorSlot = Arc<Mutex<Option<Error>>>;

/// Keep `e` unless an error is kept already; a lost device replaces it (it explains the
/// errors that follow, and may be reported after the first of them).
fn record(slot: &ErrorSlot, e: Error) {
    if let Ok(mut s) = slot.lock() {
        if matches!(e, Error::DeviceLost(_)) {
            *s = Some(e);
        } else {
            s.get_or_insert(e);
        }
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
    /// Whether matrix products split their blocks over several invocations per output.
    pub split_k: bool,
    /// Largest buffer bound to a kernel (at most [`MAX_BINDING`]).
    pub max_binding: u64,
    /// How dispatches are timed while a profile is recorded (`None`: made without profiling).
    pub timer: Option<Timer>,
    pipelines: RefCell<HashMap<KernelKey, wgpu::ComputePipeline>>,
    pool: Rc<Pool>,
    /// Storage buffers made for the pool so far (misses).
    pooled_made: std::cell::Cell<u64>,
    /// Mappings read back so far.
    readbacks: std::cell::Cell<u64>,
    /// Command buffers submitted so far.
    submissions: std::cell::Cell<u64>,
    /// Kernel dispatches recorded so far.
    dispatches: std::cell::Cell<u64>,
    /// Uniform parameter blocks by content: immutable, so one made for an earlier step can
    /// be bound again (most of a step's blocks repeat; positions change).
    uniforms: RefCell<HashMap<Vec<u32>, wgpu::Buffer>>,
    /// Bind groups by what they bind: with pooled buffers and cached uniforms, a decode step
    /// binds what the step before bound, and creating bind groups costs the CPU most of a
    /// dispatch.
    binds: RefCell<HashMap<BindKey, wgpu::BindGroup>>,
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
        #[allow(unused_mut)]
        let mut info = adapter.get_info();
        #[cfg(target_arch = "wasm32")]
        if info.name.is_empty() {
            info.name = browser_adapter_name().await.unwrap_or_default();
        }
        Ok(GpuContext {
            device,
            queue,
            dot4_packed: packed && !opts.emulate_dot4,
            split_k: opts.split_k.unwrap_or(info.device_type != wgpu::DeviceType::Cpu),
            adapter: info,
            max_binding: opts.max_binding.min(MAX_BINDING),
            timer,
            pipelines: RefCell::new(HashMap::new()),
            pool: Rc::default(),
            pooled_made: Default::default(),
            readbacks: Default::default(),
            submissions: Default::default(),
            dispatches: Default::default(),
            uniforms: RefCell::default(),
            binds: RefCell::default(),
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

    /// The device-lost error, if the device is lost (kept for [`GpuContext::check`] too).
    #[cfg(not(target_arch = "wasm32"))]
    fn lost(&self) -> Option<Error> {
        match self.errors.lock().ok()?.as_ref()? {
            Error::DeviceLost(m) => Some(Error::DeviceLost(m.clone())),
            _ => None,
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
            if val.is_some() || oom.is_some() {
                // On a lost device every call fails validation: say why (polling runs the
                // device-lost callback if it has not run yet).
                let _ = self.device.poll(wgpu::PollType::Poll);
                if let Some(lost) = self.lost() {
                    return Err(lost);
                }
            }
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

    /// A storage buffer of `bytes` (at least 16), checked against the WebGPU default limits;
    /// from the pool when one of that size is free. Its contents are undefined.
    pub fn storage(&self, label: &str, bytes: u64) -> Result<Buf> {
        let size = bytes.max(16).next_multiple_of(4);
        self.fits(label, size)?;
        self.pooled(label, size)
    }

    /// A storage buffer larger than one binding (up to the WebGPU default of 256 MiB per
    /// buffer), bound in ranges of rows.
    pub fn storage_large(&self, label: &str, bytes: u64) -> Result<Buf> {
        let size = bytes.max(16).next_multiple_of(4);
        if size > MAX_BUFFER {
            return Err(Error::MissingLimit {
                name: format!("max_buffer_size ({label})"),
                need: size,
                have: MAX_BUFFER,
            });
        }
        self.pooled(label, size)
    }

    fn pooled(&self, label: &str, size: u64) -> Result<Buf> {
        let free = self.pool.borrow_mut().get_mut(&size).and_then(|v| v.pop());
        if let Some(buf) = free {
            return Ok(Buf { buf, pool: Some(Rc::clone(&self.pool)) });
        }
        self.pooled_made.set(self.pooled_made.get() + 1);
        let buf = self.new_storage(label, size)?;
        Ok(Buf { buf, pool: (size <= POOL_MAX).then(|| Rc::clone(&self.pool)) })
    }

    /// A new storage buffer that copies may read and write, inside an error scope.
    fn new_storage(&self, label: &str, size: u64) -> Result<wgpu::Buffer> {
        self.scoped(Error::Gpu, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// How many working buffers [`GpuContext::storage`] has had to make: once a decode step
    /// has run, the next ones make none.
    pub fn buffers_made(&self) -> u64 {
        self.pooled_made.get()
    }

    /// How many times data has been read back from the device.
    pub fn readbacks(&self) -> u64 {
        self.readbacks.get()
    }

    /// How many command buffers have been submitted.
    pub fn submissions(&self) -> u64 {
        self.submissions.get()
    }

    /// How many kernel dispatches have been recorded (each costs a pass and a bind on the CPU).
    pub fn dispatches(&self) -> u64 {
        self.dispatches.get()
    }

    /// Wait until the buffer writes queued so far are on the device (native only: the
    /// browser cannot block), then [`GpuContext::check`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn finish_writes(&self) -> Result<()> {
        self.submit(self.encoder());
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("poll: {e}")))?;
        self.check()
    }

    /// Submit what `enc` recorded.
    pub fn submit(&self, enc: wgpu::CommandEncoder) {
        self.submissions.set(self.submissions.get() + 1);
        self.queue.submit([enc.finish()]);
    }

    /// An empty storage buffer for weights (copied in on the device), not pooled.
    pub fn weight_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.max(16).next_multiple_of(4);
        self.fits(label, size)?;
        self.new_storage(label, size)
    }

    /// A storage buffer holding `data` (padded to at least 16 bytes, a multiple of 4).
    pub fn storage_init(&self, label: &str, data: &[u8]) -> Result<Buf> {
        let size = (data.len() as u64).max(16).next_multiple_of(4);
        self.fits(label, size)?;
        let mut bytes = data.to_vec();
        bytes.resize(size as usize, 0);
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let buf = self.scoped(Error::Gpu, || self.buffer_with(label, &bytes, usage))?;
        Ok(Buf::owned(buf))
    }

    /// A new buffer holding `bytes` (a multiple of 4), written through the queue: a buffer
    /// mapped at creation (wgpu's `create_buffer_init`) panics when the device is lost, and a
    /// queue write reports it as an error instead. The write lands before the next
    /// submission, so before any command that reads the buffer.
    fn buffer_with(&self, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let b = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.len() as u64,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&b, 0, bytes);
        b
    }

    /// The uniform buffer holding `words`, made once per distinct content.
    fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        let mut cache = self.uniforms.borrow_mut();
        if let Some(b) = cache.get(words) {
            return b.clone();
        }
        if cache.len() >= UNIFORMS_MAX {
            cache.clear();
        }
        let b = self.buffer_with("params", bytemuck::cast_slice(words), wgpu::BufferUsages::UNIFORM);
        cache.insert(words.to_vec(), b.clone());
        b
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
        let ubuf = self.uniform(&words);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: ubuf.as_entire_binding() }];
        for (i, resource) in buffers.into_iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
        }
        let bound = entries.iter().map(|e| match &e.resource {
            wgpu::BindingResource::Buffer(b) => Some((b.buffer.clone(), b.offset, b.size.map(|s| s.get()))),
            _ => None,
        });
        let key = bound.collect::<Option<Vec<_>>>().map(|b| (self.key(kernel), b));
        let cached = key.as_ref().and_then(|k| self.binds.borrow().get(k).cloned());
        let bind = match cached {
            Some(b) => b,
            None => {
                let b = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                if let Some(k) = key {
                    let mut binds = self.binds.borrow_mut();
                    if binds.len() >= BINDS_MAX {
                        binds.clear();
                    }
                    binds.insert(k, b.clone());
                }
                b
            }
        };
        let timing = self.profile_begin(enc, self.key(kernel))?;
        {
            let timestamp_writes = timing.as_ref().and_then(|t| t.writes());
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.dispatches.set(self.dispatches.get() + 1);
        self.profile_end(enc, timing)
    }

    pub fn encoder(&self) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }

    /// Read `bytes` from the start of `buf`, once the work submitted before is done.
    pub async fn read_async(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let mut parts = self.read_after_async(None, &[(buf, bytes)]).await?;
        Ok(parts.pop().unwrap_or_default())
    }

    /// Read the leading bytes of several buffers with one staging buffer and one mapping (a
    /// token's id and its residual streams come back together), the copies appended to
    /// `pending` (commands recorded but not submitted, if any): the work and its readback go
    /// in one submission.
    pub async fn read_after_async(
        &self,
        pending: Option<wgpu::CommandEncoder>,
        parts: &[(&wgpu::Buffer, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        self.readbacks.set(self.readbacks.get() + 1);
        let sizes: Vec<u64> = parts.iter().map(|&(_, b)| b.max(4).next_multiple_of(4)).collect();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: sizes.iter().sum::<u64>().max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = pending.unwrap_or_else(|| self.encoder());
        let mut at = 0;
        for (&(buf, _), &size) in parts.iter().zip(&sizes) {
            enc.copy_buffer_to_buffer(buf, 0, &staging, at, size);
            at += size;
        }
        self.submit(enc);
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
        let mut out = Vec::with_capacity(parts.len());
        let mut at = 0;
        for (&(_, bytes), &size) in parts.iter().zip(&sizes) {
            out.push(view[at..at + bytes as usize].to_vec());
            at += size as usize;
        }
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
