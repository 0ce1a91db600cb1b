//! GGUF reader, stream and writer; dequantization against ggml's gguf-py.
//!
//! Tests that read the real models fail (never skip) when a file is missing.

mod common;

use common::model_path;
use edgeproof::gguf::{self, parse_header, Gguf, GgufStream, Header, Metadata, TensorData, Value};
use edgeproof::quant::{dequantize, TensorType};
use edgeproof::Error;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------
// Helpers

/// Records the largest single allocation per thread, so tests can prove that a
/// lying length field does not make the parser allocate what it claims.
struct PeakAlloc;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
}

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        note(new);
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Runs `f` and returns its result with the largest allocation it made.
fn largest_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|c| c.set(0));
    let r = f();
    (r, LARGEST.with(|c| c.get()))
}

/// splitmix64: seeded, so every failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A finite f16 of either sign between 2^-10 and 4: a scale that keeps results finite.
    fn sane_f16(&mut self) -> [u8; 2] {
        let bits = (self.below(2) << 15) | ((5 + self.below(12)) << 10) | self.below(1024);
        (bits as u16).to_le_bytes()
    }
}

/// Random blocks of `ty`, with sane f16 scales (and finite F32/F16 values).
fn random_blocks(ty: TensorType, n_blocks: usize, rng: &mut Rng) -> Vec<u8> {
    let bb = ty.block_bytes();
    let mut b = rng.bytes(n_blocks * bb);
    let scales: &[usize] = match ty {
        TensorType::F32 => {
            for x in b.chunks_exact_mut(4) {
                x[3] &= 0xBF; // exponent below 255: finite
            }
            &[]
        }
        TensorType::F16 | TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q8_0 => &[0],
        TensorType::Q4_1 | TensorType::Q5_1 | TensorType::Q4K | TensorType::Q5K => &[0, 2],
        TensorType::Q6K => &[208],
    };
    for block in b.chunks_exact_mut(bb) {
        for &at in scales {
            block[at..at + 2].copy_from_slice(&rng.sane_f16());
        }
    }
    b
}

/// Hand-assembled GGUF bytes, for headers the writer cannot or would not produce.
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }
    fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn u8(self, v: u8) -> Raw {
        self.bytes(&[v])
    }
    fn u32(self, v: u32) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    fn u64(self, v: u64) -> Raw {
        self.bytes(&v.to_le_bytes())
    }
    fn str(self, s: &str) -> Raw {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// A key followed by its value type.
    fn key(self, k: &str, ty: u32) -> Raw {
        self.str(k).u32(ty)
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    /// Pad to 32 and append `n` data bytes.
    fn data(mut self, n: usize) -> Vec<u8> {
        self.0.resize(self.0.len().div_ceil(32) * 32, 0);
        self.0.resize(self.0.len() + n, 0x11);
        self.0
    }
}

const T_U32: u32 = 4;
const T_BOOL: u32 = 7;
const T_STR: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;

/// A valid one-tensor file built by hand (F32, 8 elements at offset 0).
fn one_tensor(version: u32) -> Vec<u8> {
    Raw::header(version, 1, 1)
        .key("general.architecture", T_STR)
        .str("llama")
        .tensor("w", &[8], TensorType::F32 as u32, 0)
        .data(32)
}

/// Parses `bytes` both whole and as a stream; both must fail, with the same
/// error, without any allocation near what a length field claims.
fn rejects(bytes: &[u8]) -> Error {
    let (e, largest) = largest_alloc(|| {
        let whole = Gguf::from_bytes(bytes.to_vec()).err().expect("malformed file was accepted");
        let mut s = GgufStream::new();
        let streamed = match s.push(bytes) {
            Err(e) => e,
            Ok(()) => s.finish().err().expect("stream accepted a malformed file"),
        };
        assert_eq!(whole, streamed);
        whole
    });
    assert!(largest < (1 << 20) + 4 * bytes.len(), "allocated {largest} bytes for a {}-byte file", bytes.len());
    e
}

fn assert_corrupt(bytes: &[u8], fragment: &str) {
    match rejects(bytes) {
        Error::Corrupt(msg) => assert!(msg.contains(fragment), "message '{msg}' lacks '{fragment}'"),
        e => panic!("expected Corrupt({fragment}), got {e:?}"),
    }
}

fn assert_bad_tensor(bytes: &[u8], name: &str, fragment: &str) {
    match rejects(bytes) {
        Error::BadTensor { name: n, msg } => {
            assert_eq!(n, name);
            assert!(msg.contains(fragment), "message '{msg}' lacks '{fragment}'");
        }
        e => panic!("expected BadTensor({fragment}), got {e:?}"),
    }
}

fn assert_truncated(bytes: &[u8]) {
    let e = rejects(bytes);
    assert!(matches!(e, Error::Truncated { .. }), "expected Truncated, got {e:?}");
    assert_eq!(e.code(), "TRUNCATED");
}

/// The shortest prefix of `bytes` whose header parses (parsing is monotone in the prefix).
fn header_len(bytes: &[u8]) -> usize {
    let (mut lo, mut hi) = (0, bytes.len());
    assert!(parse_header(bytes).is_ok());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if parse_header(&bytes[..mid]).is_ok() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Streams `bytes` in chunks of `next_size()` bytes, checking after each push that the
/// header appears once its last byte has arrived, and no later than 5/4 of its length
/// (the stream's promise), and returns the finished file.
fn stream(bytes: &[u8], header_len: usize, want: &Header, mut next_size: impl FnMut() -> usize) -> Gguf {
    let mut s = GgufStream::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + next_size().max(1)).min(bytes.len());
        s.push(&bytes[at..end]).unwrap();
        at = end;
        assert_eq!(s.bytes_received(), at);
        if at < header_len || at >= header_len + header_len / 4 {
            assert_eq!(s.header().is_some(), at >= header_len, "header availability after {at} bytes");
        }
        assert_eq!(s.expected_len(), s.header().map(|_| want.file_len()));
    }
    assert_eq!(s.header(), Some(want));
    s.finish().unwrap()
}

/// Chunk-size plans, by name: fixed sizes and seeded random ones of three magnitudes.
fn chunk_plans(seed: u64) -> Vec<(String, Box<dyn FnMut() -> usize>)> {
    let mut plans: Vec<(String, Box<dyn FnMut() -> usize>)> = [1usize, 7, 4096, 65536]
        .into_iter()
        .map(|n| (format!("chunks of {n}"), Box::new(move || n) as Box<dyn FnMut() -> usize>))
        .collect();
    let mut rng = Rng(seed);
    plans.push((
        format!("random chunks, seed {seed}"),
        Box::new(move || {
            let max = [16, 4096, 200_000][rng.below(3) as usize];
            1 + rng.below(max) as usize
        }),
    ));
    plans
}

/// Each real model is read once per test binary.
fn model(name: &str) -> &'static Gguf {
    static SMOLLM2: OnceLock<Gguf> = OnceLock::new();
    static GEMMA3: OnceLock<Gguf> = OnceLock::new();
    let cell = if name == "smollm2" { &SMOLLM2 } else { &GEMMA3 };
    cell.get_or_init(|| Gguf::open(&model_path(name)).unwrap())
}

/// A metadata set with every value type: extremes, Unicode strings, and arrays
/// (empty and not) of every element type.
fn every_value() -> Metadata {
    let scalars = [
        Value::U8(u8::MAX),
        Value::I8(i8::MIN),
        Value::U16(u16::MAX),
        Value::I16(i16::MIN),
        Value::U32(u32::MAX),
        Value::I32(i32::MIN),
        Value::F32(-f32::MIN_POSITIVE / 8.0),
        Value::Bool(true),
        Value::Str("Grüße, 世界 🦀 e\u{301} \0 end".into()),
        Value::U64(u64::MAX),
        Value::I64(i64::MIN),
        Value::F64(std::f64::consts::PI),
    ];
    let mut md = Metadata::new();
    md.set("general.architecture", Value::Str("llama".into()));
    md.set("empty.string", Value::Str(String::new()));
    md.set("ключ.🔑", Value::Bool(false));
    for v in &scalars {
        let t = v.type_id();
        md.set(&format!("scalar.{t}"), v.clone());
        md.set(&format!("array.{t}"), Value::Array(t, vec![v.clone(); 3]));
        md.set(&format!("empty_array.{t}"), Value::Array(t, vec![]));
    }
    md.set("empty_array.9", Value::Array(T_ARRAY, vec![]));
    md.set("array.strings", Value::Array(T_STR, ["", "a", "ñ", "日本語", "👍🏽"].map(|s| Value::Str(s.into())).to_vec()));
    md.set("array.f32", Value::Array(6, [0.0, -0.0, 1.5, f32::MAX, f32::INFINITY].map(Value::F32).to_vec()));
    md
}

/// One tensor of every type, with 1 to 4 dimensions.
fn every_tensor(rng: &mut Rng) -> Vec<TensorData> {
    TensorType::ALL
        .iter()
        .enumerate()
        .map(|(i, &ty)| {
            let bl = ty.block_len() as u64;
            let dims = match i % 4 {
                0 => vec![bl * 2],
                1 => vec![bl, 3],
                2 => vec![bl * 3, 2, 2],
                _ => vec![bl, 1, 2, 3],
            };
            let n_blocks = (dims.iter().product::<u64>() / bl) as usize;
            TensorData { name: format!("t.{}", ty.name()), dims, ty, data: random_blocks(ty, n_blocks, rng) }
        })
        .collect()
}

/// A small file with a few tensors: what the truncation and stream tests cut up.
fn small_file() -> Vec<u8> {
    let mut rng = Rng(7);
    let mut md = Metadata::new();
    md.set("general.architecture", Value::Str("llama".into()));
    md.set("tokenizer.ggml.tokens", Value::Array(T_STR, ["<s>", "a", "bc"].map(|s| Value::Str(s.into())).to_vec()));
    md.set("llama.block_count", Value::U32(2));
    md.set("scores", Value::Array(6, vec![Value::F32(0.5), Value::F32(-1.0)]));
    let tensors = [TensorType::Q8_0, TensorType::F32, TensorType::Q4K]
        .into_iter()
        .map(|ty| TensorData {
            name: format!("w.{}", ty.name()),
            dims: vec![ty.block_len() as u64],
            ty,
            data: random_blocks(ty, 1, &mut rng),
        })
        .collect::<Vec<_>>();
    gguf::write(&md, &tensors).unwrap()
}

// ---------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_every_value_and_tensor_type() {
    let md = every_value();
    let tensors = every_tensor(&mut Rng(1));
    let bytes = gguf::write(&md, &tensors).unwrap();
    let g = Gguf::from_bytes(bytes.clone()).unwrap();
    let h = &g.header;
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, 32);
    assert_eq!(h.data_offset % 32, 0);
    assert_eq!(h.file_len(), bytes.len() as u64);
    assert_eq!(h.metadata, md);
    // PartialEq says 0.0 == -0.0: compare float bits too.
    let bits = |m: &Metadata| format!("{:?}", m.entries().iter().map(|(_, v)| v).collect::<Vec<_>>());
    assert_eq!(bits(&h.metadata), bits(&md));
    assert_eq!(h.architecture().unwrap(), "llama");
    assert_eq!(h.tensors.len(), TensorType::ALL.len());
    for (t, info) in tensors.iter().zip(&h.tensors) {
        assert_eq!((&info.name, &info.dims, info.ty), (&t.name, &t.dims, t.ty));
        assert_eq!(info.offset % 32, 0);
        assert_eq!(info.n_elements(), t.dims.iter().product::<u64>());
        assert_eq!(info.row_len(), t.dims[0] as usize);
        let view = g.tensor(&t.name).unwrap();
        assert_eq!(view.data, &t.data[..], "{} data", t.name);
        let values = view.to_f32().unwrap();
        assert_eq!(values.len(), info.n_elements() as usize);
        assert!(values.iter().all(|x| x.is_finite()), "{}: sane scales give finite values", t.name);
    }
    assert!(matches!(g.tensor("nope"), Err(Error::MissingTensor(n)) if n == "nope"));
}

#[test]
fn file_without_tensors_round_trips() {
    let mut md = Metadata::new();
    md.set("general.architecture", Value::Str("none".into()));
    let bytes = gguf::write(&md, &[]).unwrap();
    let g = Gguf::from_bytes(bytes.clone()).unwrap();
    assert_eq!((g.header.tensors.len(), g.header.data_size), (0, 0));
    assert_eq!(g.header.file_len(), bytes.len() as u64);
    assert_eq!(g.metadata(), &md);
}

#[test]
fn writer_rejects_wrong_data_length() {
    let t = TensorData { name: "w".into(), dims: vec![32], ty: TensorType::Q8_0, data: vec![0; 33] };
    let e = gguf::write(&Metadata::new(), &[t]).err().unwrap();
    assert_eq!(e.code(), "INVALID_ARGUMENT");
}

#[test]
fn hand_crafted_v2_and_v3_headers_parse() {
    for version in [2, 3] {
        let g = Gguf::from_bytes(one_tensor(version)).unwrap();
        assert_eq!(g.header.version, version);
        assert_eq!(g.header.architecture().unwrap(), "llama");
        assert_eq!(g.header.data_offset, 128);
        let w = g.tensor("w").unwrap();
        assert_eq!((w.info.dims.as_slice(), w.info.ty, w.info.n_bytes), (&[8u64][..], TensorType::F32, 32));
        assert_eq!(w.data, &[0x11; 32]);
    }
}

#[test]
fn custom_alignment() {
    let bytes = Raw::header(3, 2, 1)
        .key("general.alignment", T_U32)
        .u32(64)
        .tensor("a", &[4], TensorType::F32 as u32, 0)
        .tensor("b", &[4], TensorType::F32 as u32, 64)
        .0;
    let h = parse_header(&bytes).unwrap();
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    assert_eq!(h.data_size, 64 + 16);
}

#[test]
fn writer_follows_general_alignment() {
    for align in [1u32, 8, 64, 4096] {
        let mut md = Metadata::new();
        md.set("general.alignment", Value::U32(align));
        let tensors = every_tensor(&mut Rng(align as u64));
        let g = Gguf::from_bytes(gguf::write(&md, &tensors).unwrap()).unwrap();
        assert_eq!(g.header.alignment, align as u64);
        for t in &tensors {
            assert_eq!(g.tensor(&t.name).unwrap().data, &t.data[..], "alignment {align}");
        }
    }
    let mut md = Metadata::new();
    md.set("general.alignment", Value::U32(48));
    assert_eq!(gguf::write(&md, &[]).err().unwrap().code(), "INVALID_ARGUMENT");
}

#[test]
fn metadata_getters_name_the_key() {
    let md = every_value();
    assert_eq!(md.get_u64("scalar.4").unwrap(), u32::MAX as u64);
    assert_eq!(md.get_str_array("array.strings").unwrap()[3], "日本語");
    assert!(matches!(md.get_u64("missing"), Err(Error::MissingKey(k)) if k == "missing"));
    let e = md.get_str("scalar.4").err().unwrap();
    assert!(matches!(&e, Error::WrongType { key, found, .. } if key == "scalar.4" && found == "u32"), "{e:?}");
    let e = md.get_f32_array("array.strings").err().unwrap();
    assert!(matches!(&e, Error::WrongType { found, .. } if found == "array of string"), "{e:?}");
    assert_eq!(md.get_u32("scalar.10").err().unwrap().code(), "CORRUPT");
}

// ---------------------------------------------------------------------------
// Streaming

#[test]
fn stream_of_written_file_equals_whole_parse() {
    let mut rng = Rng(3);
    let bytes = gguf::write(&every_value(), &every_tensor(&mut rng)).unwrap();
    let whole = Gguf::from_bytes(bytes.clone()).unwrap();
    let hl = header_len(&bytes);
    assert!(hl < whole.header.data_offset as usize);
    for seed in 0..20 {
        for (plan, next) in chunk_plans(seed) {
            let g = stream(&bytes, hl, &whole.header, next);
            assert_eq!(g.header, whole.header, "{plan}");
            assert_eq!(g.file_bytes(), &bytes[..], "{plan}");
        }
    }
}

#[test]
fn stream_of_smollm2_equals_whole_parse() {
    let whole = model("smollm2");
    let bytes = whole.file_bytes();
    let hl = header_len(bytes);
    assert!(hl > 1_000_000, "the tokenizer makes a large header");
    for (plan, next) in chunk_plans(2025) {
        let g = stream(bytes, hl, &whole.header, next);
        assert_eq!(g.header, whole.header, "{plan}");
        assert!(g.file_bytes() == bytes, "{plan}: bytes differ");
    }
}

#[test]
fn stream_reports_header_errors_early() {
    let mut s = GgufStream::new();
    s.push(b"GG").unwrap();
    assert_eq!(s.push(b"ML").err(), Some(Error::BadMagic(*b"GGML")));

    let mut s = GgufStream::new();
    let bytes = Raw::header(3, 0, 1).key("k", 42).0;
    assert_eq!(s.push(&bytes).err().unwrap().code(), "CORRUPT");

    // A truncated stream says so at the end, with or without a header.
    let bytes = small_file();
    for cut in [10, header_len(&bytes), bytes.len() - 1] {
        let mut s = GgufStream::new();
        s.push(&bytes[..cut]).unwrap();
        assert_eq!(s.finish().err().unwrap().code(), "TRUNCATED", "cut at {cut}");
    }
}

#[test]
fn stream_rejects_a_header_claiming_more_than_can_be_allocated() {
    // A valid header whose one tensor lies 2^62 bytes into the data section.
    let bytes = Raw::header(3, 1, 0).tensor("w", &[8], TensorType::F32 as u32, 1 << 62).data(0);
    assert!(parse_header(&bytes).is_ok());
    let mut s = GgufStream::new();
    let e = s.push(&bytes).expect_err("cannot hold 2^62 bytes");
    assert_eq!(e.code(), "IO", "{e:?}");
}

// ---------------------------------------------------------------------------
// Malformed files

#[test]
fn every_truncation_is_reported_as_truncated() {
    let bytes = small_file();
    let hl = header_len(&bytes);
    for n in 0..bytes.len() {
        let prefix = &bytes[..n];
        assert_truncated(prefix);
        match parse_header(prefix) {
            Ok(h) => {
                assert!(n >= hl);
                assert!(h.file_len() > n as u64);
            }
            Err(Error::Truncated { offset, need, have, .. }) => {
                assert!(n < hl);
                // The error says how much more is needed, never more than the header's true end.
                assert!(offset + need > n as u64 && offset + need <= hl as u64, "prefix {n}: {offset}+{need}");
                assert_eq!(offset + have, n as u64);
            }
            Err(e) => panic!("prefix {n}: {e:?}"),
        }
    }
    assert!(Gguf::from_bytes(bytes).is_ok());
}

#[test]
fn bad_magic() {
    let mut bytes = one_tensor(3);
    bytes[..4].copy_from_slice(b"GGML");
    assert_eq!(rejects(&bytes), Error::BadMagic(*b"GGML"));
    assert_eq!(rejects(&bytes).code(), "BAD_MAGIC");
}

#[test]
fn unsupported_versions() {
    for v in [0, 1, 4, u32::MAX] {
        let e = rejects(&one_tensor(v));
        assert_eq!(e, Error::UnsupportedVersion(v));
        assert_eq!(e.code(), "UNSUPPORTED_VERSION");
    }
}

#[test]
fn unknown_value_types() {
    assert_corrupt(&Raw::header(3, 0, 1).key("k", 13).u32(0).data(0), "unknown value type 13");
    assert_corrupt(
        &Raw::header(3, 0, 1).key("k", T_ARRAY).u32(13).u64(1).u32(0).data(0),
        "unknown array element type 13",
    );
}

#[test]
fn nested_arrays() {
    let bytes = Raw::header(3, 0, 1).key("k", T_ARRAY).u32(T_ARRAY).u64(1).u32(T_U32).u64(0).data(0);
    assert_corrupt(&bytes, "nested");
}

#[test]
fn unknown_tensor_types_are_named() {
    for (id, name) in [(10, "Q2_K"), (30, "BF16"), (4, "Q4_2"), (200, "type id 200")] {
        let bytes = Raw::header(3, 1, 0).tensor("blk.0.w", &[256], id, 0).data(1024);
        let e = rejects(&bytes);
        assert_eq!(e, Error::UnsupportedTensorType { tensor: "blk.0.w".into(), ty: name.into() });
        assert_eq!(e.code(), "UNSUPPORTED_TENSOR_TYPE");
        assert!(e.to_string().contains(name));
    }
}

#[test]
fn bad_bool_byte() {
    assert_corrupt(&Raw::header(3, 0, 1).key("flag", T_BOOL).u8(2).data(0), "bool byte 2");
    assert_corrupt(&Raw::header(3, 0, 1).key("a", T_ARRAY).u32(T_BOOL).u64(2).u8(1).u8(255).data(0), "bool byte 255");
}

#[test]
fn invalid_utf8() {
    let bad = [b'k', 0xC3, 0x28];
    assert_corrupt(&Raw::header(3, 0, 1).u64(3).bytes(&bad).u32(T_U32).u32(1).data(0), "UTF-8");
    assert_corrupt(&Raw::header(3, 0, 1).key("k", T_STR).u64(3).bytes(&bad).data(0), "UTF-8");
    assert_corrupt(&Raw::header(3, 1, 0).u64(1).u8(0xFF).u32(1).u64(8).u32(0).u64(0).data(32), "UTF-8");
}

#[test]
fn huge_lengths_do_not_allocate() {
    // rejects() also checks that nothing near the claimed size is allocated.
    let huge = 1u64 << 60;
    assert_truncated(&Raw::header(3, 0, 1).u64(huge).bytes(b"key").data(64));
    assert_truncated(&Raw::header(3, 0, 1).key("k", T_STR).u64(huge).data(64));
    // Arrays longer than MAX_ARRAY_LEN are corrupt whatever follows (each element would
    // cost a 32-byte Value); shorter ones that the bytes cannot back are truncated.
    for elem in [0, T_U32, T_STR, T_U64] {
        assert_corrupt(&Raw::header(3, 0, 1).key("k", T_ARRAY).u32(elem).u64(huge).data(64), "at most");
        assert_truncated(
            &Raw::header(3, 0, 1).key("k", T_ARRAY).u32(elem).u64(edgeproof::gguf::MAX_ARRAY_LEN).data(64),
        );
    }
    assert_corrupt(&Raw::header(3, 0, 1).key("k", T_ARRAY).u32(T_U64).u64(u64::MAX).data(64), "at most");
    assert_corrupt(&Raw::header(3, huge, 0).data(64), "tensor count");
    assert_corrupt(&Raw::header(3, 0, huge).data(64), "metadata count");
    // Plausible counts that the bytes cannot back.
    assert_truncated(&Raw::header(3, 1 << 32, 0).0);
    assert_truncated(&Raw::header(3, 0, 1 << 32).0);
    assert_bad_tensor(&Raw::header(3, 1, 0).tensor("w", &[huge], 0, 0).data(64), "w", "overflow");
}

#[test]
fn bad_dimensions() {
    let t = |dims: &[u64], ty: TensorType| Raw::header(3, 1, 0).tensor("w", dims, ty as u32, 0).data(4096);
    assert_bad_tensor(&t(&[], TensorType::F32), "w", "0 dimensions");
    assert_bad_tensor(&t(&[1, 1, 1, 1, 1], TensorType::F32), "w", "5 dimensions");
    assert_bad_tensor(&t(&[32, 0], TensorType::F32), "w", "zero dimension");
    assert_bad_tensor(&t(&[0], TensorType::Q8_0), "w", "zero dimension");
    assert_bad_tensor(&t(&[1 << 32, 1 << 32], TensorType::F32), "w", "overflow");
    assert_bad_tensor(&t(&[33, 2], TensorType::Q4_0), "w", "not a multiple");
    assert_bad_tensor(&t(&[128, 2], TensorType::Q4K), "w", "block length 256");
    assert_eq!(rejects(&t(&[16], TensorType::Q8_0)).code(), "BAD_TENSOR");
}

#[test]
fn misaligned_offset() {
    let bytes = Raw::header(3, 1, 0).tensor("w", &[4], TensorType::F32 as u32, 16).data(64);
    assert_bad_tensor(&bytes, "w", "not aligned to 32");
}

#[test]
fn overlapping_tensors() {
    let bytes = Raw::header(3, 2, 0)
        .tensor("a", &[16], TensorType::F32 as u32, 0)
        .tensor("b", &[16], TensorType::F32 as u32, 32)
        .data(128);
    assert_corrupt(&bytes, "overlap");
    // Listed out of order, still caught; adjacent tensors are fine.
    let bytes = Raw::header(3, 3, 0)
        .tensor("a", &[8], TensorType::F32 as u32, 64)
        .tensor("b", &[64], TensorType::F32 as u32, 0)
        .tensor("c", &[8], TensorType::F32 as u32, 256)
        .data(512);
    assert_corrupt(&bytes, "overlap");
    let bytes = Raw::header(3, 2, 0)
        .tensor("a", &[8], TensorType::F32 as u32, 32)
        .tensor("b", &[8], TensorType::F32 as u32, 0)
        .data(64);
    assert!(Gguf::from_bytes(bytes).is_ok());
}

#[test]
fn duplicates() {
    let bytes = Raw::header(3, 0, 2).key("k", T_U32).u32(1).key("k", T_U32).u32(2).data(0);
    assert_corrupt(&bytes, "'k' appears twice");
    let bytes = Raw::header(3, 2, 0)
        .tensor("w", &[8], TensorType::F32 as u32, 0)
        .tensor("w", &[8], TensorType::F32 as u32, 32)
        .data(64);
    assert_corrupt(&bytes, "'w' appears twice");
}

#[test]
fn bad_alignment() {
    let with = |ty: u32, v: &[u8]| Raw::header(3, 0, 1).key("general.alignment", ty).bytes(v).data(0);
    for a in [0u32, 3, 48, 1000] {
        assert_corrupt(&with(T_U32, &a.to_le_bytes()), "not a power of two");
    }
    assert_corrupt(&with(T_STR, &[1, 0, 0, 0, 0, 0, 0, 0, b'8']), "not a power of two");
}

#[test]
fn data_section_cut_short() {
    let bytes = one_tensor(3);
    let h = parse_header(&bytes).unwrap();
    assert_eq!(h.file_len(), bytes.len() as u64);
    match rejects(&bytes[..bytes.len() - 1]) {
        Error::Truncated { what, need, .. } => assert_eq!((what.as_str(), need), ("tensor data", 1)),
        e => panic!("{e:?}"),
    }
}

#[test]
fn dequantize_checks_lengths() {
    let mut out = [0f32; 32];
    assert_eq!(dequantize(TensorType::Q8_0, &[0; 33], &mut out).err().unwrap().code(), "INVALID_ARGUMENT");
    assert_eq!(dequantize(TensorType::Q8_0, &[0; 34], &mut out[..31]).err().unwrap().code(), "INVALID_ARGUMENT");
    assert!(dequantize(TensorType::Q8_0, &[0; 34], &mut out).is_ok());
}

/// Random single-byte edits of a small file: never a panic, and stream and whole parse agree.
#[test]
fn mutations_never_panic_and_stream_agrees() {
    let base = small_file();
    let mut rng = Rng(11);
    for _ in 0..3000 {
        let mut bytes = base.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len() as u64) as usize;
            bytes[i] = rng.next() as u8;
        }
        let whole = Gguf::from_bytes(bytes.clone());
        let mut s = GgufStream::new();
        let split = rng.below(bytes.len() as u64) as usize;
        let streamed = s.push(&bytes[..split]).and_then(|_| s.push(&bytes[split..])).and_then(|_| s.finish());
        match (whole, streamed) {
            (Ok(a), Ok(b)) => {
                // Metadata as Debug, not ==, so that a NaN value equals itself.
                assert_eq!(format!("{:?}", a.metadata().entries()), format!("{:?}", b.metadata().entries()));
                assert_eq!(a.header.tensors, b.header.tensors);
                assert_eq!(a.header.data_offset, b.header.data_offset);
                for t in &a.header.tensors {
                    a.tensor(&t.name).unwrap().to_f32().unwrap();
                }
            }
            // A header claiming more than can be allocated stops the stream early.
            (Err(Error::Truncated { .. }), Err(Error::Io(m))) => {
                let claim = parse_header(&bytes).unwrap().file_len();
                assert!(claim > 1 << 30, "{m}: {claim}");
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("whole {:?} vs stream {:?}", a.err(), b.err()),
        }
    }
}

/// The fuzzer's seed corpus, `crate/fuzz/seeds/`: tiny files from the writer, each
/// after the fuzz target's two control bytes (split point, chunk size).
fn fuzz_seeds() -> Vec<(&'static str, [u8; 2], Vec<u8>)> {
    let mut rng = Rng(5);
    let one_block = TensorType::ALL
        .iter()
        .map(|&ty| TensorData {
            name: ty.name().into(),
            dims: vec![ty.block_len() as u64],
            ty,
            data: random_blocks(ty, 1, &mut rng),
        })
        .collect::<Vec<_>>();
    let mut aligned = Metadata::new();
    aligned.set("general.alignment", Value::U32(64));
    vec![
        ("empty", [0, 0], gguf::write(&Metadata::new(), &[]).unwrap()),
        ("v2", [128, 3], one_tensor(2)),
        ("small", [64, 0], small_file()),
        ("every_type", [200, 63], gguf::write(&every_value(), &one_block).unwrap()),
        ("aligned_64", [255, 255], gguf::write(&aligned, &one_block[..3]).unwrap()),
    ]
}

/// Keeps the committed seeds equal to what the writer makes now;
/// `EDGEPROOF_WRITE_SEEDS=1` rewrites them.
#[test]
fn fuzz_seeds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (name, ctl, file) in fuzz_seeds() {
        assert!(Gguf::from_bytes(file.clone()).is_ok());
        let seed = [&ctl[..], &file].concat();
        assert!(seed.len() <= 4096, "{name}: the fuzzer runs with -max_len=4096");
        let path = dir.join(name);
        if std::env::var_os("EDGEPROOF_WRITE_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &seed).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(committed == seed, "{} is stale: rerun this test with EDGEPROOF_WRITE_SEEDS=1", path.display());
    }
}

// ---------------------------------------------------------------------------
// Dequantization against ggml's gguf-py (fixtures from scripts/dequant_fixtures.py)

struct Fixture {
    file: String,
    json: String,
}

impl Fixture {
    /// A field of the flat JSON object the script writes (string or integer; no escapes).
    fn field(&self, key: &str) -> Option<&str> {
        let pat = format!("\"{key}\": ");
        let rest = &self.json[self.json.find(&pat)? + pat.len()..];
        match rest.strip_prefix('"') {
            Some(s) => Some(&s[..s.find('"')?]),
            None => Some(rest[..rest.find([',', '\n', '}'])?].trim()),
        }
    }
    fn get(&self, key: &str) -> &str {
        self.field(key).unwrap_or_else(|| panic!("{}: no '{key}'", self.file))
    }
    fn num(&self, key: &str) -> usize {
        self.get(key).parse().unwrap()
    }
    fn ty(&self) -> TensorType {
        let name = self.get("type");
        TensorType::ALL.into_iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("{}: type {name}", self.file))
    }
    fn blocks(&self) -> Vec<u8> {
        let h = self.get("blocks_hex").as_bytes();
        h.chunks(2).map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap()).collect()
    }
    fn expected_bits(&self) -> Vec<u32> {
        self.get("expected_bits").split_whitespace().map(|w| u32::from_str_radix(w, 16).unwrap()).collect()
    }
}

fn fixtures() -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut out: Vec<Fixture> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name().unwrap().to_str().unwrap().starts_with("dequant_")
                && p.extension().is_some_and(|e| e == "json")
        })
        .map(|p| Fixture {
            file: p.file_name().unwrap().to_string_lossy().into(),
            json: std::fs::read_to_string(&p).unwrap(),
        })
        .collect();
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

/// Exact equality is the right bar, not a tolerance. An f16 scale has 11 significant bits
/// and the integer factors at most 8 (Q8_0's quants), 6+5 (K-quant scale and quant) or
/// 8+6 (Q6_K), so every product fits f32's 24 bits except Q6_K's `d*sc*q`, which rounds
/// once whatever the order; the only other rounding is the one addition of the min
/// (Q4_1, Q5_1, Q4_K, Q5_K). So ggml's C code, gguf-py's numpy, and a C build that
/// contracts `d1*q - m1` into an FMA all give these bits; and as every operand is a
/// multiple of 2^-24, no result is an f32 subnormal, so flushing them changes nothing.
#[test]
fn dequantize_matches_gguf_py_bit_for_bit() {
    let mut covered = BTreeSet::new();
    let mut checked = 0;
    for f in fixtures() {
        let ty = f.ty();
        let want = f.expected_bits();
        assert_eq!(want.len(), f.num("n_elements"), "{}", f.file);
        let mut got = vec![0f32; want.len()];
        dequantize(ty, &f.blocks(), &mut got).unwrap();
        let bad: Vec<String> = got
            .iter()
            .zip(&want)
            .enumerate()
            .filter(|(_, (g, w))| g.to_bits() != **w)
            .map(|(i, (g, w))| format!("[{i}] {:08x} ({g:e}) != {w:08x} ({:e})", g.to_bits(), f32::from_bits(*w)))
            .collect();
        assert!(
            bad.is_empty(),
            "{}: {} of {} values differ, first: {:?}",
            f.file,
            bad.len(),
            want.len(),
            &bad[..bad.len().min(5)]
        );
        covered.insert(ty.name());
        checked += want.len();
    }
    let all: BTreeSet<_> = TensorType::ALL.iter().map(|t| t.name()).collect();
    assert_eq!(covered, all, "every tensor type needs a fixture");
    assert!(checked > 10_000);
}

/// The fixtures taken from the real models hold those files' bytes at the stated place.
#[test]
fn real_fixtures_match_the_model_files() {
    let mut n = 0;
    for f in fixtures() {
        let Some(tensor) = f.field("tensor") else { continue };
        let g = model(if f.get("source").starts_with("SmolLM2") { "smollm2" } else { "gemma3" });
        let view = g.tensor(tensor).unwrap();
        assert_eq!(view.info.ty, f.ty(), "{}", f.file);
        assert_eq!(view.info.row_len(), f.num("row_len"));
        let row_bytes = view.info.ty.bytes_for(view.info.row_len() as u64).unwrap() as usize;
        let (first, rows) = (f.num("first_row"), f.num("rows"));
        let blocks = f.blocks();
        assert_eq!(&view.data[first * row_bytes..(first + rows) * row_bytes], &blocks[..], "{}", f.file);
        assert_eq!((g.header.data_offset + view.info.offset) as usize + first * row_bytes, f.num("file_offset"));
        let all = view.to_f32().unwrap();
        let row_len = view.info.row_len();
        let want = f.expected_bits();
        assert!(all[first * row_len..(first + rows) * row_len].iter().map(|x| x.to_bits()).eq(want));
        n += 1;
    }
    assert_eq!(n, 6, "one fixture per type in the real models");
}

// ---------------------------------------------------------------------------
// The real models

fn count_types(h: &Header) -> Vec<(&'static str, usize)> {
    TensorType::ALL
        .iter()
        .map(|&ty| (ty.name(), h.tensors.iter().filter(|t| t.ty == ty).count()))
        .filter(|&(_, n)| n > 0)
        .collect()
}

fn dims(g: &Gguf, name: &str) -> (Vec<u64>, TensorType) {
    let t = g.tensor(name).unwrap();
    (t.info.dims.clone(), t.info.ty)
}

#[test]
fn smollm2_header() {
    let g = model("smollm2");
    let h = &g.header;
    assert_eq!((h.version, h.tensors.len(), h.architecture().unwrap()), (3, 272, "llama"));
    assert_eq!(h.data_offset, 1_785_664);
    assert_eq!(h.file_len(), g.file_bytes().len() as u64);
    assert_eq!(count_types(h), [("F32", 61), ("Q4_1", 210), ("Q8_0", 1)]);
    assert_eq!(dims(g, "token_embd.weight"), (vec![576, 49152], TensorType::Q8_0));
    assert_eq!(dims(g, "blk.0.ffn_down.weight"), (vec![1536, 576], TensorType::Q4_1));
    assert_eq!(dims(g, "blk.29.attn_k.weight"), (vec![576, 192], TensorType::Q4_1));
    assert_eq!(dims(g, "output_norm.weight"), (vec![576], TensorType::F32));
    assert!(matches!(g.tensor("output.weight"), Err(Error::MissingTensor(_))), "tied embedding");
    assert_eq!(h.metadata.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(h.metadata.get_u64("llama.block_count").unwrap(), 30);
}

#[test]
fn gemma3_header() {
    let g = model("gemma3");
    let h = &g.header;
    assert_eq!((h.version, h.tensors.len(), h.architecture().unwrap()), (3, 236, "gemma3"));
    assert_eq!(h.data_offset, 6_525_120);
    assert_eq!(h.file_len(), g.file_bytes().len() as u64);
    assert_eq!(count_types(h), [("F32", 109), ("Q5_0", 81), ("Q8_0", 10), ("Q4_K", 27), ("Q6_K", 9)]);
    assert_eq!(dims(g, "token_embd.weight"), (vec![640, 262144], TensorType::Q8_0));
    assert_eq!(dims(g, "blk.0.attn_output.weight"), (vec![1024, 640], TensorType::Q4K));
    assert_eq!(dims(g, "blk.0.ffn_down.weight"), (vec![2048, 640], TensorType::Q6K));
    assert_eq!(dims(g, "blk.0.attn_k_norm.weight"), (vec![256], TensorType::F32));
    assert!(matches!(g.tensor("output.weight"), Err(Error::MissingTensor(_))), "tied embedding");
    assert_eq!(h.metadata.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 262144);
    assert_eq!(h.metadata.get_u64("gemma3.block_count").unwrap(), 18);
}

/// Every tensor of both models dequantizes, a row at a time, to finite values.
#[test]
fn real_models_dequantize_to_finite_values() {
    for name in ["smollm2", "gemma3"] {
        let g = model(name);
        for info in &g.header.tensors {
            let data = g.tensor(&info.name).unwrap().data;
            let row_bytes = info.ty.bytes_for(info.row_len() as u64).unwrap() as usize;
            let mut row = vec![0f32; info.row_len()];
            for (r, src) in data.chunks_exact(row_bytes).enumerate() {
                dequantize(info.ty, src, &mut row).unwrap();
                assert!(row.iter().all(|x| x.is_finite()), "{name} {} row {r}", info.name);
            }
        }
    }
}
