//! The native command-line interface.

use clap::{Parser, Subcommand, ValueEnum};
use edgeproof::engine::{generate_greedy, Engine, Finish, RefModel};
use edgeproof::gguf::Gguf;
use edgeproof::model::Arch;
use edgeproof::tokenizer::chat::{ChatTemplate, Message};
use edgeproof::tokenizer::{StreamDecoder, Tokenizer};
use edgeproof::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
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

#[derive(Subcommand)]
enum Cmd {
    /// Generate text greedily, streaming it to stdout; speed goes to stderr.
    Generate {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        /// Wrap the prompt in the model's chat template as a user message.
        #[arg(long)]
        chat: bool,
        /// System message for --chat (default: the template's own).
        #[arg(long, requires = "chat")]
        system: Option<String>,
    },
    /// Perplexity over a text file, computed as llama.cpp's llama-perplexity does.
    Ppl {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: PathBuf,
        #[arg(long, default_value_t = 256)]
        ctx: usize,
    },
    /// Write the tiny random-weight test model.
    Tiny {
        #[arg(long, value_enum)]
        arch: ArchArg,
        /// A real GGUF whose tokenizer the tiny model takes.
        #[arg(long)]
        tokenizer_from: PathBuf,
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
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli.cmd) {
        eprintln!("edgeproof: error [{}]: {e}", e.code());
        std::process::exit(2);
    }
}

fn load(path: &std::path::Path) -> Result<(Gguf, Tokenizer)> {
    let t = Instant::now();
    let gguf = Gguf::open(path)?;
    let tok = Tokenizer::from_metadata(gguf.metadata())?;
    eprintln!("loaded {} in {:.2}s", path.display(), t.elapsed().as_secs_f64());
    Ok((gguf, tok))
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Generate { model, prompt, max_tokens, chat, system } => {
            let (gguf, tok) = load(&model)?;
            let m = RefModel::load(&gguf)?;
            let ids = if chat {
                let mut msgs = Vec::new();
                if let Some(s) = system {
                    msgs.push(Message::new("system", &s));
                }
                msgs.push(Message::new("user", &prompt));
                let text = ChatTemplate::from_metadata(gguf.metadata())?.render(&msgs, true)?;
                tok.encode(&text, true, true)?
            } else {
                tok.encode(&prompt, true, false)?
            };
            let mut session = m.session();
            let mut dec = StreamDecoder::new(&tok);
            let mut out = std::io::stdout();
            let start = Instant::now();
            let mut first: Option<f64> = None;
            let (tokens, finish) = generate_greedy(&mut session, &ids, max_tokens, tok.eog_ids(), |t| {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64());
                let piece = dec.push(t)?;
                out.write_all(piece.as_bytes()).and_then(|_| out.flush())?;
                Ok(true)
            })?;
            let rest = dec.finish();
            writeln!(out, "{rest}")?;
            let total = start.elapsed().as_secs_f64();
            let prefill = first.unwrap_or(total);
            let n_dec = tokens.len().saturating_sub(1);
            eprintln!(
                "prompt {} tokens: prefill {:.1} tok/s; generated {} tokens ({}): decode {:.1} tok/s",
                ids.len(),
                ids.len() as f64 / prefill,
                tokens.len(),
                match finish {
                    Finish::Eog => "end of generation",
                    Finish::Length => "length",
                    Finish::Stopped => "stopped",
                },
                if n_dec > 0 { n_dec as f64 / (total - prefill) } else { 0.0 },
            );
            Ok(())
        }
        Cmd::Ppl { model, text, ctx } => {
            let (gguf, tok) = load(&model)?;
            let m = RefModel::load(&gguf)?;
            let text = std::fs::read_to_string(&text).map_err(|e| Error::Io(format!("{}: {e}", text.display())))?;
            let tokens = tok.encode(&text, true, false)?;
            let bos = if tok.add_bos() { tok.bos() } else { None };
            let mut session = m.session();
            eprintln!("{} tokens, ctx {ctx}, {} chunks", tokens.len(), tokens.len() / ctx);
            let start = Instant::now();
            let r = edgeproof::ppl::perplexity(&mut session as &mut dyn Engine, &tokens, ctx, bos, |c, n, p| {
                eprint!("\r[{c}/{n}] {p:.4}");
            })?;
            eprintln!();
            println!(
                "PPL = {:.4} +/- {:.4} ({} chunks of {ctx}, {} scored tokens, {:.1}s)",
                r.ppl,
                r.ppl_err,
                r.n_chunks,
                r.n_scored,
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Cmd::Tiny { arch, tokenizer_from, out, seed } => {
            let src = std::fs::read(&tokenizer_from).map_err(|e| Error::Io(format!("{}: {e}", tokenizer_from.display())))?;
            let header = edgeproof::gguf::parse_header(&src)?;
            let arch = match arch {
                ArchArg::Llama => Arch::Llama,
                ArchArg::Gemma3 => Arch::Gemma3,
            };
            let bytes = edgeproof::tiny::tiny_model(arch, &header.metadata, seed)?;
            std::fs::write(&out, &bytes).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
            println!("{}", out.display());
            Ok(())
        }
        Cmd::Info { model } => {
            let gguf = Gguf::open(&model)?;
            let h = &gguf.header;
            println!("GGUF v{}, {} tensors, data at {} ({} bytes)", h.version, h.tensors.len(), h.data_offset, h.data_size);
            for (k, v) in h.metadata.entries() {
                let shown = match v {
                    edgeproof::gguf::Value::Array(_, items) => format!("[{} items of {}]", items.len(), v.type_name()),
                    edgeproof::gguf::Value::Str(s) if s.len() > 80 => format!("{:?}...", &s[..s.floor_char_boundary(80)]),
                    v => format!("{v:?}"),
                };
                println!("  {k} = {shown}");
            }
            for t in &h.tensors {
                println!("  {:<32} {:<5} {:?}", t.name, t.ty.name(), t.dims);
            }
            Ok(())
        }
    }
}
