//! The native command-line interface.

use clap::{Parser, Subcommand, ValueEnum};
use edgeproof::engine::{generate_text, Engine, ExactModel, Finish, GpuModel, RefModel};
use edgeproof::gguf::Gguf;
use edgeproof::gpu::{GpuContext, GpuOptions, Profiling};
use edgeproof::model::Arch;
use edgeproof::receipt::{
    random_salt, trace_from_bytes, trace_to_bytes, ChatMessage, KeyPair, ModelCommitment, Opening, Prompt, Receipt,
    Recording, Request,
};
use edgeproof::sampling::SamplingParams;
use edgeproof::tokenizer::Tokenizer;
use edgeproof::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "edgeproof", version, about = "Verifiable small language model inference")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchArg {
    Llama,
    Gemma3,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Numerics {
    /// Integer-only, bit-exact on every backend (docs/NUMERICS.md).
    Exact,
    /// The plain f32 reference.
    F32,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// This machine's CPU (all threads).
    Cpu,
    /// WebGPU through wgpu (Vulkan, Metal or DX12 natively; exact numerics only).
    Gpu,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text, streaming it to stdout; speed goes to stderr.
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        #[arg(long, value_enum, default_value_t = Numerics::Exact)]
        numerics: Numerics,
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// 0 is greedy (ties to the lowest token id).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Keep only the k most likely tokens (0: all).
        #[arg(long, default_value_t = edgeproof::sampling::DEFAULT_TOP_K)]
        top_k: u32,
        #[arg(long, default_value_t = edgeproof::sampling::DEFAULT_TOP_P)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Stop when the text contains this string (repeatable); it is not printed.
        #[arg(long)]
        stop: Vec<String>,
        /// Wrap the prompt in the model's chat template as a user message.
        #[arg(long)]
        chat: bool,
        /// System message for --chat (default: the template's own).
        #[arg(long, requires = "chat")]
        system: Option<String>,
        /// Write the generation's receipt (JSON) to this file (exact numerics only).
        #[arg(long)]
        receipt: Option<PathBuf>,
        /// Write the receipt in its binary form instead of JSON.
        #[arg(long, requires = "receipt")]
        binary: bool,
        /// A private receipt: salted commitments instead of the prompt and the output; the
        /// opening, which reveals them, goes to --opening.
        #[arg(long, requires_all = ["receipt", "opening"])]
        private: bool,
        /// Where --private writes the opening (JSON).
        #[arg(long, requires = "private")]
        opening: Option<PathBuf>,
        /// Write the trace (every layer's digest per token, binary) to this file.
        #[arg(long, requires = "receipt")]
        trace: Option<PathBuf>,
        /// Sign the receipt with this key file (`edgeproof key new`).
        #[arg(long, requires = "receipt")]
        sign: Option<PathBuf>,
    },
    /// Verify a receipt by re-executing it: exit 0 when it verifies, 1 when not (or when a
    /// private receipt was not re-executed for want of its opening).
    Verify {
        /// The receipt (JSON or binary) written by `generate --receipt` or `embed --receipt`
        /// (then `--model` is the encoder's directory).
        receipt: PathBuf,
        #[arg(long)]
        model: PathBuf,
        /// A private receipt's opening (`generate --private --opening`).
        #[arg(long)]
        opening: Option<PathBuf>,
        /// The receipt's trace (`generate --trace`): a divergence then names its layer.
        #[arg(long)]
        trace: Option<PathBuf>,
        /// Where to re-execute.
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// Print every finding and the checks made.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Embed texts with a BERT sentence encoder (all-MiniLM-L6-v2): prints one JSON object
    /// `{"vectors": [[...], ...]}`, one L2-normalized vector per text.
    Embed {
        /// The checkpoint's directory: `model.safetensors`, `config.json`, `tokenizer.json`.
        #[arg(long)]
        model: PathBuf,
        /// The texts; `-` reads them from stdin, one per line.
        #[arg(required = true)]
        texts: Vec<String>,
        /// Word pieces per text, `[CLS]` and `[SEP]` included; longer texts are truncated.
        #[arg(long, default_value_t = edgeproof::embed::DEFAULT_MAX_TOKENS)]
        max_tokens: usize,
        #[arg(long, value_enum, default_value_t = Numerics::Exact)]
        numerics: Numerics,
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// Write the embedding's receipt (JSON) to this file (exact numerics only).
        #[arg(long)]
        receipt: Option<PathBuf>,
    },
    /// Perplexity over a text file, computed as llama.cpp's llama-perplexity does.
    Ppl {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: PathBuf,
        #[arg(long, default_value_t = 256)]
        ctx: usize,
        /// With `exact`, also runs the f32 reference and prints top-1 agreement with it.
        #[arg(long, value_enum, default_value_t = Numerics::Exact)]
        numerics: Numerics,
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
    },
    /// Prefill and decode speed, one thread and all threads, both numerics.
    Bench {
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 128)]
        prefill: usize,
        #[arg(long, default_value_t = 32)]
        decode: usize,
        /// Also time a sampled generation of this many tokens with a receipt, and its
        /// verification by re-execution, both on `--backend`, and print the receipt's sizes in
        /// each form (0: skip).
        #[arg(long, default_value_t = 0)]
        receipt: u32,
        /// `gpu`: the exact mode on WebGPU instead of the CPU table.
        #[arg(long, value_enum, default_value_t = Backend::Cpu)]
        backend: Backend,
        /// With `--backend gpu`: also time each kernel of one more decode step (timestamp
        /// queries where the adapter has them, else the wall clock per dispatch).
        #[arg(long)]
        profile: bool,
        /// Only this numerics in the CPU table (default: both).
        #[arg(long, value_enum)]
        numerics: Option<Numerics>,
        /// With an encoder's directory as `--model`: the texts to embed, one a line (their first
        /// 64); prints sentences/s at batch 1 and 32.
        #[arg(long)]
        texts: Option<PathBuf>,
    },
    /// Write the tiny random-weight test model, or with `--like` a random-weight model of a
    /// real model's shapes.
    Tiny {
        #[arg(long, value_enum, required_unless_present = "like")]
        arch: Option<ArchArg>,
        /// A real GGUF whose tokenizer the tiny model takes.
        #[arg(long, required_unless_present = "like")]
        tokenizer_from: Option<PathBuf>,
        /// A real GGUF (its header is enough) whose metadata, tensor names, types and shapes
        /// the model copies, with random weights.
        #[arg(long, conflicts_with_all = ["arch", "tokenizer_from"])]
        like: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Print a model file's metadata and tensors.
    Info {
        #[arg(long)]
        model: PathBuf,
    },
    /// Signing keys for receipts.
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Make an ECDSA P-256 key and write it (a private JWK, readable by its owner only) to
    /// FILE; prints its fingerprint.
    New { file: PathBuf },
}

/// Keeps the large blocks a batched pass frees for the next pass (`edgeproof::alloc`).
#[global_allocator]
static ALLOC: edgeproof::alloc::KeepLarge = edgeproof::alloc::KeepLarge::new();

fn main() {
    // A closed pipe (`edgeproof info ... | head`) ends the program as it ends other
    // command-line tools, instead of a panic in `println!`.
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Each matmul's sums and outputs are megabytes, made and freed per call: glibc would map
    // them fresh each time (mmap above its threshold, trimmed back on free), and the kernel
    // zeroes every page on its first touch, a tenth of a prefill's time. Keep them in the heap
    // (and those of 4 MiB and more in `KeepLarge`, the global allocator above).
    // Each thread keeps its own arena (glibc's default): with one for all, the threads waited
    // on its lock for the small buffers of every task (SmolLM2's two-thread prefill and decode
    // 20–30% slower), more than a thread's arena costs by mapping what exceeds its 64 MiB
    // heaps (a batch of Gemma 3's logits).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes thresholds; called before any other thread exists.
    unsafe {
        // Older glibc refuses thresholds above 32 MiB (half its heap size).
        if libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) == 0 {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    let cli = Cli::parse();
    // Run inside the thread pool: each parallel matmul then starts on this thread, a worker,
    // instead of handing the work to the pool and sleeping until it is done (two context
    // switches per operation, a third of a decode step's time on one thread).
    let result = match rayon::ThreadPoolBuilder::new().build() {
        Ok(pool) => pool.install(|| run(cli.cmd)),
        Err(e) => Err(Error::Io(format!("thread pool: {e}"))),
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("edgeproof: error [{}]: {e}", e.code());
            std::process::exit(2);
        }
    }
}

/// The prompt as the receipt commits to it: text, or chat messages.
fn prompt_of(prompt: String, chat: bool, system: Option<String>) -> Prompt {
    if !chat {
        return Prompt::Text(prompt);
    }
    let msg = |role: &str, content: String| ChatMessage { role: role.into(), content };
    Prompt::Messages(system.map(|s| msg("system", s)).into_iter().chain([msg("user", prompt)]).collect())
}

/// A progress line on stderr, redrawn when the whole percentage changes.
fn progress(what: &str) -> impl FnMut(f32) + '_ {
    let mut last = -1;
    move |p| {
        let pct = (p * 100.0) as i32;
        if pct != last {
            last = pct;
            eprint!("\r{what} {pct:3}%");
        }
    }
}

fn commitment(gguf: &Gguf) -> Result<ModelCommitment> {
    let t = Instant::now();
    let m = ModelCommitment::of(gguf, progress("hashing the model"))?;
    eprintln!(" ({:.2}s)", t.elapsed().as_secs_f64());
    Ok(m)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

fn write(path: &std::path::Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// A new file only its owner can read (a key, an opening); an existing one is not replaced.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new();
    f.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
    f.open(path).and_then(|mut f| f.write_all(bytes)).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

struct VerifyArgs {
    receipt: PathBuf,
    model: PathBuf,
    opening: Option<PathBuf>,
    trace: Option<PathBuf>,
    backend: Backend,
    verbose: bool,
}

fn verify_cmd(a: VerifyArgs) -> Result<bool> {
    let (model, backend, verbose) = (&a.model, a.backend, a.verbose);
    let bytes = read(&a.receipt)?;
    if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v["kind"] == edgeproof::embed::EMBEDDING_KIND)
    {
        return verify_embedding(&String::from_utf8_lossy(&bytes), model, backend);
    }
    let mut r = Receipt::parse(&bytes)?;
    if let Some(p) = &a.opening {
        r.opening = Some(Opening::from_json(&String::from_utf8_lossy(&read(p)?))?);
    }
    if let Some(p) = &a.trace {
        r.attach_trace(trace_from_bytes(&read(p)?)?)?;
    }
    let (gguf, tok) = load(model)?;
    let m = commitment(&gguf)?;
    let (rep, secs, on) = with_recording(&gguf, backend, |engine| {
        let on = engine.backend();
        let t = Instant::now();
        let mut shown = progress("re-executing");
        let rep = edgeproof::receipt::verify(&r, &gguf, &tok, Some(&m), engine, |_, p| shown(p))?;
        eprintln!();
        Ok((rep, t.elapsed().as_secs_f64(), on))
    })?;
    println!("{}", rep.verdict());
    if verbose {
        println!(
            "receipt v{} ({}): prompt tokens {}, {} generated, finish {:?}; meta (not signed): made by {} on {} (prefill {:.0} ms, decode {:.0} ms)",
            r.version,
            if r.is_private() { "private" } else { "public" },
            r.public().map_or("withheld".into(), |p| p.prompt_ids.len().to_string()),
            r.steps.len(),
            r.finish,
            r.meta.engine,
            r.meta.backend,
            r.meta.prefill_ms,
            r.meta.decode_ms
        );
        println!(
            "re-executed on {}{} in {:.0} ms: {} steps matched",
            on.0,
            on.1.map(|a| format!(" ({a})")).unwrap_or_default(),
            secs * 1e3,
            rep.steps_matched
        );
        for f in &rep.findings {
            println!("  - {f}");
        }
    }
    Ok(rep.verified())
}

fn load(path: &std::path::Path) -> Result<(Gguf, Tokenizer)> {
    let t = Instant::now();
    let gguf = Gguf::open(path)?;
    let tok = Tokenizer::from_metadata(gguf.metadata())?;
    eprintln!("read {} in {:.2}s", path.display(), t.elapsed().as_secs_f64());
    Ok((gguf, tok))
}

/// Load the model in the chosen numerics and hand a fresh session to `f`.
fn with_engine<T>(
    gguf: &Gguf,
    numerics: Numerics,
    backend: Backend,
    f: impl FnOnce(&mut dyn Engine) -> Result<T>,
) -> Result<T> {
    let t = Instant::now();
    match (numerics, backend) {
        (Numerics::Exact, Backend::Cpu) => {
            let m = ExactModel::load(gguf)?;
            eprintln!("exact weights ready in {:.2}s", t.elapsed().as_secs_f64());
            f(&mut m.session()?)
        }
        (Numerics::Exact, Backend::Gpu) => with_recording(gguf, backend, |e| f(e)),
        (Numerics::F32, Backend::Cpu) => {
            let m = RefModel::load(gguf)?;
            eprintln!("f32 weights ready in {:.2}s", t.elapsed().as_secs_f64());
            f(&mut m.session()?)
        }
        (Numerics::F32, Backend::Gpu) => {
            Err(Error::InvalidArgument("the GPU backend runs the exact numerics only".into()))
        }
    }
}

/// An exact engine that records residual streams (for receipts), on the chosen backend.
fn with_recording<T>(gguf: &Gguf, backend: Backend, f: impl FnOnce(&mut dyn Recording) -> Result<T>) -> Result<T> {
    let t = Instant::now();
    match backend {
        Backend::Cpu => {
            let m = ExactModel::load(gguf)?;
            eprintln!("exact weights ready in {:.2}s", t.elapsed().as_secs_f64());
            f(&mut m.session()?)
        }
        Backend::Gpu => {
            let ctx = Rc::new(GpuContext::new_blocking(GpuOptions::from_env())?);
            let m = GpuModel::load(gguf, ctx)?;
            let mut s = m.session()?;
            eprintln!(
                "GPU weights ready in {:.2}s on {}",
                t.elapsed().as_secs_f64(),
                s.describe().1.unwrap_or_default()
            );
            f(&mut s)
        }
    }
}

/// Sequential read bandwidth of this machine in GB/s (sum over a 512 MiB buffer, all threads).
fn read_bandwidth() -> f64 {
    use rayon::prelude::*;
    let buf = vec![1u64; 64 << 20];
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let s: u64 = buf.par_chunks(1 << 16).map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b))).sum();
        std::hint::black_box(s);
        best = best.max((buf.len() * 8) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// Prefill `ids` in one batch, then `n_decode` single-token steps: tokens/s of each.
fn time_engine(engine: &mut dyn Engine, ids: &[u32], n_decode: usize) -> Result<(f64, f64)> {
    let n = ids.len();
    let t = Instant::now();
    engine.eval(ids, 0, n - 1..n)?;
    let pre = n as f64 / t.elapsed().as_secs_f64();
    // Decode steps as generation runs them: the token picked where the engine picks it (on
    // the device for the GPU: 4 bytes read back instead of a row of logits).
    let t = Instant::now();
    for i in 0..n_decode {
        engine.next_token(&ids[i % n..i % n + 1], n + i, &SamplingParams::greedy(), i as u64)?;
    }
    Ok((pre, n_decode as f64 / t.elapsed().as_secs_f64()))
}

fn bench(
    model: &std::path::Path,
    n_prefill: usize,
    n_decode: usize,
    backend: Backend,
    profile: bool,
    only: Option<Numerics>,
) -> Result<()> {
    if profile && backend != Backend::Gpu {
        return Err(Error::InvalidArgument("--profile needs --backend gpu".into()));
    }
    let gguf = Gguf::open(model)?;
    let cfg = edgeproof::model::Config::from_metadata(gguf.metadata())?;
    // Bytes a decode step must read: every weight but the embedding table (one row of it),
    // plus the output projection (the embedding again when tied).
    let tensor_bytes = |f32_mode: bool| -> u64 {
        gguf.header
            .tensors
            .iter()
            .filter(|t| t.name != "token_embd.weight" || gguf.header.tensor_info("output.weight").is_none())
            .map(|t| if f32_mode { t.n_elements() * 4 } else { t.n_bytes })
            .sum()
    };
    let ids: Vec<u32> = (0..n_prefill as u32).map(|i| (i * 7919 + 11) % cfg.n_vocab as u32).collect();
    println!("model {} ({:?}), prefill {n_prefill} tokens, decode {n_decode} tokens", model.display(), cfg.arch);
    if backend == Backend::Gpu {
        let (pre, dec, adapter, report) = if profile {
            bench_gpu_profiled(&gguf, &ids, n_decode, tensor_bytes(false))?
        } else {
            with_recording(&gguf, backend, |engine| {
                let adapter = engine.backend().1.unwrap_or_default();
                // One warm-up step compiles the pipelines.
                engine.eval(&ids[..1], 0, 0..1)?;
                let (pre, dec) = time_engine(engine, &ids, n_decode)?;
                Ok((pre, dec, adapter, String::new()))
            })?
        };
        println!("| numerics | backend | prefill tok/s | decode tok/s | bytes read per decode step |");
        println!("| --- | --- | --- | --- | --- |");
        println!("| exact | gpu: {adapter} | {pre:.1} | {dec:.2} | {:.1} MB |", tensor_bytes(false) as f64 / 1e6);
        print!("{report}");
        return Ok(());
    }
    let bw = read_bandwidth();
    let threads = rayon::current_num_threads();
    println!("machine read bandwidth: {bw:.1} GB/s ({threads} threads)");
    println!("| numerics | threads | prefill tok/s | decode tok/s | bytes read per decode step | decode bandwidth (of {bw:.1} GB/s) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for numerics in [Numerics::Exact, Numerics::F32].into_iter().filter(|n| only.is_none_or(|o| o == *n)) {
        let bytes = tensor_bytes(numerics == Numerics::F32);
        for n_threads in [1, threads] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n_threads)
                .build()
                .map_err(|e| Error::InvalidArgument(format!("thread pool: {e}")))?;
            let (pre, dec) = pool
                .install(|| with_engine(&gguf, numerics, Backend::Cpu, |engine| time_engine(engine, &ids, n_decode)))?;
            let gbs = bytes as f64 * dec / 1e9;
            println!(
                "| {} | {n_threads} | {pre:.1} | {dec:.2} | {:.1} MB | {gbs:.2} GB/s ({:.0}%) |",
                if numerics == Numerics::Exact { "exact" } else { "f32" },
                bytes as f64 / 1e6,
                gbs / bw * 100.0
            );
        }
    }
    Ok(())
}

/// `bench --backend gpu --profile`: the speed as without it (the context can profile, but
/// records nothing meanwhile), then one more decode step timed per kernel: its table and the
/// bandwidth at which the step reads its `weight_bytes`, as text to print.
fn bench_gpu_profiled(
    gguf: &Gguf,
    ids: &[u32],
    n_decode: usize,
    weight_bytes: u64,
) -> Result<(f64, f64, String, String)> {
    let t = Instant::now();
    let ctx = Rc::new(GpuContext::new_profiled_blocking(GpuOptions::from_env(), Profiling::Auto)?);
    let m = GpuModel::load(gguf, Rc::clone(&ctx))?;
    let mut s = m.session()?;
    let adapter = s.describe().1.unwrap_or_default();
    eprintln!("GPU weights ready in {:.2}s on {adapter}", t.elapsed().as_secs_f64());
    // One warm-up step compiles the pipelines.
    s.eval(&ids[..1], 0, 0..1)?;
    let (pre, dec) = time_engine(&mut s, ids, n_decode)?;
    let pos = ids.len() + n_decode;
    // A decode step as generation runs it: the token picked on the device, one readback.
    let (d0, s0) = (ctx.dispatches(), ctx.submissions());
    s.next_token(&ids[..1], pos, &SamplingParams::greedy(), 0)?;
    let (dispatches, submissions) = (ctx.dispatches() - d0, ctx.submissions() - s0);
    ctx.start_profile()?;
    let t = Instant::now();
    s.eval(&ids[..1], pos, 0..1)?;
    let wall = t.elapsed().as_secs_f64();
    let p = ctx.take_profile()?;
    let (secs, gb) = (p.total_ns() / 1e9, weight_bytes as f64 / 1e9);
    let mut r = format!("\none decode step: {dispatches} dispatches, {submissions} submissions\n");
    r += &format!("\nper-kernel profile of one decode step (position {pos}), timed by {}:\n{p}\n", p.timer);
    r += &format!(
        "step: {wall:.3} s wall, {secs:.3} s in kernels; its {:.1} MB of weights read at {:.2} GB/s\n",
        gb * 1e3,
        gb / secs
    );
    // lavapipe and SwiftShader run on the CPU: their memory bandwidth is the machine's.
    if ctx.adapter.device_type == wgpu::DeviceType::Cpu {
        let bw = read_bandwidth();
        r += &format!(
            "CPU adapter: this machine reads {bw:.1} GB/s; the step reaches {:.1}% of it\n",
            gb / secs / bw * 100.0
        );
    }
    Ok((pre, dec, adapter, r))
}

/// Texts from the command line, `-` standing for stdin's lines.
fn read_texts(args: Vec<String>) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for a in args {
        if a == "-" {
            let stdin = std::io::read_to_string(std::io::stdin())?;
            texts.extend(stdin.lines().map(str::to_string));
        } else {
            texts.push(a);
        }
    }
    Ok(texts)
}

/// The exact encoder on `backend`, and its model commitment.
enum AnyEncoder {
    Cpu(Box<edgeproof::embed::Encoder<edgeproof::backend::exact::ExactWeight>>),
    Gpu(Box<edgeproof::embed::GpuEncoder>),
}

fn exact_encoder(gguf: &Gguf, backend: Backend) -> Result<AnyEncoder> {
    Ok(match backend {
        Backend::Cpu => AnyEncoder::Cpu(Box::new(edgeproof::embed::Encoder::load(gguf)?)),
        Backend::Gpu => {
            let ctx = Rc::new(GpuContext::new_blocking(GpuOptions::from_env())?);
            AnyEncoder::Gpu(Box::new(edgeproof::embed::GpuEncoder::load(gguf, ctx)?))
        }
    })
}

fn embed_cmd(
    model: &std::path::Path,
    texts: Vec<String>,
    max_tokens: usize,
    numerics: Numerics,
    backend: Backend,
    receipt: Option<PathBuf>,
) -> Result<bool> {
    use edgeproof::embed::{self, Encoder};
    let texts = read_texts(texts)?;
    let gguf = embed::convert_dir(model)?;
    let t = Instant::now();
    let vectors = match numerics {
        Numerics::Exact => {
            let enc = exact_encoder(&gguf, backend)?;
            let m = commitment(&gguf)?;
            let mut shown = progress("embedding");
            let step = |d: usize, n: usize| {
                shown(d as f32 / n as f32);
                Ok(())
            };
            let out = match &enc {
                AnyEncoder::Cpu(e) => embed::embed(&**e, &m, &texts, max_tokens, step)?,
                AnyEncoder::Gpu(e) => embed::embed(&**e, &m, &texts, max_tokens, step)?,
            };
            eprintln!();
            if let Some(path) = receipt {
                write(&path, out.receipt.to_json())?;
                eprintln!("receipt {} (root {})", path.display(), hex::encode(out.receipt.root));
            }
            out.vectors
        }
        Numerics::F32 => {
            if receipt.is_some() || backend != Backend::Cpu {
                return Err(Error::InvalidArgument("receipts and --backend gpu need --numerics exact".into()));
            }
            let enc = Encoder::load_f32(&gguf)?;
            let ids = texts.iter().map(|t| enc.tokenize(t, max_tokens)).collect::<Result<Vec<_>>>()?;
            let mut v = Vec::with_capacity(ids.len());
            for b in ids.chunks(embed::BATCH) {
                v.extend(enc.embed_ids(b)?);
            }
            v
        }
    };
    let secs = t.elapsed().as_secs_f64();
    eprintln!("{} texts in {:.0} ms ({:.1} texts/s)", texts.len(), secs * 1e3, texts.len() as f64 / secs);
    println!("{}", serde_json::json!({ "vectors": vectors }));
    Ok(true)
}

fn verify_embedding(text: &str, model: &std::path::Path, backend: Backend) -> Result<bool> {
    use edgeproof::embed::{self, EmbeddingReceipt};
    let r = EmbeddingReceipt::from_json(text)?;
    let gguf = embed::convert_dir(model)?;
    let enc = exact_encoder(&gguf, backend)?;
    let m = commitment(&gguf)?;
    let mut shown = progress("re-embedding");
    let step = |d: usize, n: usize| {
        shown(d as f32 / n.max(1) as f32);
        Ok(())
    };
    let findings = match &enc {
        AnyEncoder::Cpu(e) => embed::verify(&r, &**e, &m, step)?,
        AnyEncoder::Gpu(e) => embed::verify(&r, &**e, &m, step)?,
    };
    eprintln!();
    if findings.is_empty() {
        println!("verified: {} texts re-embedded bit for bit", r.texts.len());
    } else {
        println!("NOT verified: {}", findings.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "));
    }
    Ok(findings.is_empty())
}

/// Sentences/s of an encoder at batch 1 and 32 on the first 64 lines of `texts`: the exact mode
/// on 1 and all threads and f32 on the CPU, or the exact mode on the GPU; the median of 3 runs
/// after a warm-up.
fn bench_embed(model: &std::path::Path, texts: &std::path::Path, backend: Backend) -> Result<()> {
    use edgeproof::embed::{self, Encoder, GpuEncoder, DEFAULT_MAX_TOKENS};
    let all = std::fs::read_to_string(texts).map_err(|e| Error::Io(format!("{}: {e}", texts.display())))?;
    let lines: Vec<&str> = all.lines().take(64).collect();
    let gguf = embed::convert_dir(model)?;
    let exact = Encoder::load(&gguf)?;
    let ids = lines.iter().map(|t| exact.tokenize(t, DEFAULT_MAX_TOKENS)).collect::<Result<Vec<_>>>()?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    println!("encoder {}: {} texts, {tokens} word pieces", model.display(), ids.len());
    let median = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        f()?;
        let mut t = Vec::new();
        for _ in 0..3 {
            let s = Instant::now();
            f()?;
            t.push(s.elapsed().as_secs_f64());
        }
        t.sort_by(f64::total_cmp);
        Ok(ids.len() as f64 / t[1])
    };
    println!("| numerics | backend | threads | batch 1 texts/s | batch 32 texts/s |");
    println!("| --- | --- | --- | --- | --- |");
    let rate = |embed: &mut dyn FnMut(&[Vec<u32>]) -> Result<()>| -> Result<(f64, f64)> {
        let one = median(&mut || ids.chunks(1).try_for_each(&mut *embed))?;
        let batch = median(&mut || ids.chunks(32).try_for_each(&mut *embed))?;
        Ok((one, batch))
    };
    if backend == Backend::Gpu {
        let ctx = Rc::new(GpuContext::new_blocking(GpuOptions::from_env())?);
        let adapter = ctx.adapter.name.clone();
        let gpu = GpuEncoder::load(&gguf, ctx)?;
        let (one, batch) = rate(&mut |b| gpu.embed_ids(b).map(|_| ()))?;
        println!("| exact | gpu: {adapter} | - | {one:.1} | {batch:.1} |");
        return Ok(());
    }
    let f32_enc = Encoder::load_f32(&gguf)?;
    let threads = rayon::current_num_threads();
    for (name, n_threads) in [("exact", 1), ("exact", threads), ("f32", 1), ("f32", threads)] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n_threads)
            .build()
            .map_err(|e| Error::InvalidArgument(format!("thread pool: {e}")))?;
        let (one, batch) = pool.install(|| {
            if name == "exact" {
                rate(&mut |b| exact.embed_ids(b).map(|_| ()))
            } else {
                rate(&mut |b| f32_enc.embed_ids(b).map(|_| ()))
            }
        })?;
        println!("| {name} | cpu | {n_threads} | {one:.1} | {batch:.1} |");
    }
    Ok(())
}

/// Generation with a receipt against its verification (all threads, exact), both on
/// `backend`, each on a fresh session, after a short generation that warms the backend up
/// (the GPU compiles its pipelines on first use).
fn bench_receipt(model: &std::path::Path, n: u32, backend: Backend) -> Result<()> {
    let (gguf, tok) = load(model)?;
    let m = ModelCommitment::of(&gguf, |_| {})?;
    match backend {
        Backend::Cpu => {
            let exact = ExactModel::load(&gguf)?;
            time_receipt(&gguf, &tok, &m, n, &mut || Ok(Box::new(exact.session()?)))
        }
        Backend::Gpu => {
            let g = GpuModel::load(&gguf, Rc::new(GpuContext::new_blocking(GpuOptions::from_env())?))?;
            time_receipt(&gguf, &tok, &m, n, &mut || Ok(Box::new(g.session()?)))
        }
    }
}

fn time_receipt(
    gguf: &Gguf,
    tok: &Tokenizer,
    m: &ModelCommitment,
    n: u32,
    session: &mut dyn FnMut() -> Result<Box<dyn Recording>>,
) -> Result<()> {
    let req = Request {
        prompt: Prompt::Text("Once upon a time, in a small village by the sea,".into()),
        params: SamplingParams::new(0.7, 40, 0.95, 1)?,
        max_tokens: n,
        stop: vec![],
        salt: None,
    };
    let warm = Request { max_tokens: n.min(4), ..req.clone() };
    edgeproof::receipt::generate(session()?.as_mut(), gguf, tok, m, &warm, |_| Ok(true))?;
    let t = Instant::now();
    let r = edgeproof::receipt::generate(session()?.as_mut(), gguf, tok, m, &req, |_| Ok(true))?;
    let gen = t.elapsed().as_secs_f64();
    let mut engine = session()?;
    let on = engine.backend();
    let t = Instant::now();
    let rep = edgeproof::receipt::verify(&r, gguf, tok, Some(m), engine.as_mut(), |_, _| {})?;
    let ver = t.elapsed().as_secs_f64();
    println!("| receipt | prompt tokens | generated tokens | generate s | verify s | verify / generate | verdict |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| exact, {} | {} | {} | {gen:.2} | {ver:.2} | {:.2} | {} |",
        match on.1 {
            Some(adapter) => format!("{}: {adapter}", on.0),
            None => format!("{}, {} threads", on.0, rayon::current_num_threads()),
        },
        r.public().map_or(0, |p| p.prompt_ids.len()),
        r.steps.len(),
        ver / gen,
        rep.verdict()
    );
    receipt_sizes(r, || {
        edgeproof::receipt::generate(
            session()?.as_mut(),
            gguf,
            tok,
            m,
            &Request { salt: Some(random_salt()?), ..req.clone() },
            |_| Ok(true),
        )
    })
}

/// The sizes of one generation's receipt in each form, signed (`docs/RECEIPT.md`, "Sizes");
/// `private` makes the same generation's private receipt.
fn receipt_sizes(mut public: Receipt, private: impl FnOnce() -> Result<Receipt>) -> Result<()> {
    let key = KeyPair::generate()?;
    let mut v1 = public.to_v1()?;
    let mut private = private()?;
    for r in [&mut public, &mut private] {
        r.sign(&key);
    }
    // v1 has no signature: its size is without one.
    v1.signature = None;
    let trace = trace_to_bytes(public.trace.as_deref().unwrap_or_default()).len();
    let opening = private.opening.as_ref().map_or(0, |o| o.to_json().len());
    println!();
    // v1 was written pretty-printed; compact, for a fair comparison, too.
    let v1_json = v1.to_json()?;
    let v1_compact = serde_json::from_str::<serde_json::Value>(&v1_json).map(|v| v.to_string().len()).unwrap_or(0);
    println!(
        "| tokens | v1 JSON (compact) | v2 JSON | v2 binary | private JSON | private binary | opening JSON | trace |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {} | {} ({v1_compact}) | {} | {} | {} | {} | {opening} | {trace} |",
        public.steps.len(),
        v1_json.len(),
        public.sealed().to_json()?.len(),
        public.to_bytes()?.len(),
        private.sealed().to_json()?.len(),
        private.to_bytes()?.len(),
    );
    Ok(())
}

fn run(cmd: Cmd) -> Result<bool> {
    match cmd {
        Cmd::Verify { receipt, model, opening, trace, backend, verbose } => {
            verify_cmd(VerifyArgs { receipt, model, opening, trace, backend, verbose })
        }
        Cmd::Key(KeyCmd::New { file }) => {
            let key = KeyPair::generate()?;
            write_private(&file, key.to_jwk().as_bytes())?;
            println!("{}", key.fingerprint());
            Ok(true)
        }
        Cmd::Embed { model, texts, max_tokens, numerics, backend, receipt } => {
            embed_cmd(&model, texts, max_tokens, numerics, backend, receipt)
        }
        Cmd::Generate {
            model,
            prompt,
            max_tokens,
            numerics,
            backend,
            temperature,
            top_k,
            top_p,
            seed,
            stop,
            chat,
            system,
            receipt,
            binary,
            private,
            opening,
            trace,
            sign,
        } => {
            let params = SamplingParams::new(temperature, top_k, top_p, seed)?;
            let (gguf, tok) = load(&model)?;
            if let Some(path) = receipt {
                if numerics != Numerics::Exact {
                    return Err(Error::InvalidArgument("receipts need --numerics exact".into()));
                }
                let max_tokens = u32::try_from(max_tokens)
                    .map_err(|_| Error::InvalidArgument(format!("--max-tokens {max_tokens}")))?;
                let key = sign.map(|p| KeyPair::from_jwk(&String::from_utf8_lossy(&read(&p)?))).transpose()?;
                let salt = if private { Some(random_salt()?) } else { None };
                let req = Request { prompt: prompt_of(prompt, chat, system), params, max_tokens, stop, salt };
                let m = commitment(&gguf)?;
                let mut out = std::io::stdout();
                let mut r = with_recording(&gguf, backend, |engine| {
                    edgeproof::receipt::generate(engine, &gguf, &tok, &m, &req, |t| {
                        out.write_all(t.as_bytes()).and_then(|_| out.flush()).map_err(Error::from)?;
                        Ok(true)
                    })
                })?;
                writeln!(out)?;
                if let Some(key) = &key {
                    r.sign(key);
                }
                write(&path, if binary { r.to_bytes()? } else { r.to_json()?.into_bytes() })?;
                if let (Some(p), Some(o)) = (&opening, &r.opening) {
                    // Replaced like the receipt beside it, but made anew, readable by its owner only.
                    if p.exists() {
                        std::fs::remove_file(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
                    }
                    write_private(p, o.to_json().as_bytes())?;
                }
                if let Some(p) = &trace {
                    write(p, trace_to_bytes(r.trace.as_deref().unwrap_or_default()))?;
                }
                eprintln!(
                    "{} tokens ({:?}): prefill {:.0} ms, decode {:.0} ms; receipt {} (final {})",
                    r.steps.len(),
                    r.finish,
                    r.meta.prefill_ms,
                    r.meta.decode_ms,
                    path.display(),
                    hex::encode(r.final_hash)
                );
                return Ok(true);
            }
            let ids = prompt_of(prompt, chat, system).ids(gguf.metadata(), &tok)?;
            let generated = with_engine(&gguf, numerics, backend, |engine| {
                let mut out = std::io::stdout();
                let start = Instant::now();
                let mut first: Option<f64> = None;
                let (tokens, finish, _) = generate_text(engine, &tok, &ids, max_tokens, &params, &stop, |t| {
                    first.get_or_insert_with(|| start.elapsed().as_secs_f64());
                    out.write_all(t.as_bytes()).and_then(|_| out.flush()).map_err(Error::from)
                })?;
                writeln!(out)?;
                let total = start.elapsed().as_secs_f64();
                let prefill = first.unwrap_or(total);
                let n_dec = tokens.len().saturating_sub(1);
                eprintln!(
                    "prompt {} tokens: prefill {:.1} tok/s; generated {} tokens ({}): decode {:.1} tok/s",
                    ids.len(),
                    ids.len() as f64 / prefill,
                    tokens.len(),
                    match finish {
                        Finish::Eog(_) => "end of generation",
                        Finish::Length => "length",
                        Finish::Stop => "stop string",
                        Finish::Aborted => "aborted",
                    },
                    if n_dec > 0 { n_dec as f64 / (total - prefill) } else { 0.0 },
                );
                Ok(())
            });
            generated.map(|_| true)
        }
        Cmd::Ppl { model, text, ctx, numerics, backend } => {
            let (gguf, tok) = load(&model)?;
            let text = std::fs::read_to_string(&text).map_err(|e| Error::Io(format!("{}: {e}", text.display())))?;
            let tokens = tok.encode(&text, true, false)?;
            let bos = if tok.add_bos() { tok.bos() } else { None };
            eprintln!("{} tokens, ctx {ctx}, {} chunks", tokens.len(), tokens.len() / ctx);
            let run = |numerics: Numerics, backend: Backend| -> Result<edgeproof::ppl::Perplexity> {
                with_engine(&gguf, numerics, backend, |engine| {
                    let start = Instant::now();
                    let r =
                        edgeproof::ppl::perplexity(engine, &tokens, ctx, bos, |c, n, p| eprint!("\r[{c}/{n}] {p:.4}"))?;
                    eprintln!();
                    println!(
                        "{}: PPL = {:.4} +/- {:.4} ({} chunks of {ctx}, {} scored tokens, {:.1}s)",
                        match numerics {
                            Numerics::Exact => "exact",
                            Numerics::F32 => "f32",
                        },
                        r.ppl,
                        r.ppl_err,
                        r.n_chunks,
                        r.n_scored,
                        start.elapsed().as_secs_f64()
                    );
                    Ok(r)
                })
            };
            let r = run(numerics, backend)?;
            if numerics == Numerics::Exact {
                let f = run(Numerics::F32, Backend::Cpu)?;
                let same = r.argmax.iter().zip(&f.argmax).filter(|(a, b)| a == b).count();
                println!(
                    "exact vs f32: PPL {:+.2}%, top-1 agreement {:.2}% ({same}/{})",
                    (r.ppl / f.ppl - 1.0) * 100.0,
                    same as f64 * 100.0 / r.argmax.len() as f64,
                    r.argmax.len()
                );
            }
            Ok(true)
        }
        Cmd::Bench { model, prefill, decode, receipt, backend, profile, numerics, texts } => {
            if model.is_dir() {
                let texts =
                    texts.ok_or_else(|| Error::InvalidArgument("an encoder's bench needs --texts FILE".into()))?;
                return bench_embed(&model, &texts, backend).map(|_| true);
            }
            bench(&model, prefill, decode, backend, profile, numerics)?;
            if receipt > 0 {
                bench_receipt(&model, receipt, backend)?;
            }
            Ok(true)
        }
        Cmd::Tiny { arch, tokenizer_from, like, out, seed } => {
            let bytes = match (arch, tokenizer_from, like) {
                (_, _, Some(like)) => {
                    edgeproof::tiny::random_like(&edgeproof::gguf::parse_header(&read(&like)?)?, seed)?
                }
                (Some(arch), Some(src), None) => {
                    let header = edgeproof::gguf::parse_header(&read(&src)?)?;
                    let arch = match arch {
                        ArchArg::Llama => Arch::Llama,
                        ArchArg::Gemma3 => Arch::Gemma3,
                    };
                    edgeproof::tiny::tiny_model(arch, &header.metadata, seed)?
                }
                _ => return Err(Error::InvalidArgument("tiny needs --arch and --tokenizer-from, or --like".into())),
            };
            write(&out, &bytes)?;
            println!("{}", out.display());
            Ok(true)
        }
        Cmd::Info { model } => {
            let gguf = Gguf::open(&model)?;
            let h = &gguf.header;
            println!(
                "GGUF v{}, {} tensors, data at {} ({} bytes)",
                h.version,
                h.tensors.len(),
                h.data_offset,
                h.data_size
            );
            for (k, v) in h.metadata.entries() {
                let shown = match v {
                    edgeproof::gguf::Value::Array(_, items) => format!("[{} items of {}]", items.len(), v.type_name()),
                    edgeproof::gguf::Value::Str(s) if s.len() > 80 => {
                        format!("{:?}...", &s[..s.floor_char_boundary(80)])
                    }
                    v => format!("{v:?}"),
                };
                println!("  {k} = {shown}");
            }
            for t in &h.tensors {
                println!("  {:<32} {:<5} {:?}", t.name, t.ty.name(), t.dims);
            }
            Ok(true)
        }
    }
}
