//! GGUF (v2, v3) reader and writer.
//!
//! [`parse_header`] reads metadata and tensor infos from the start of a file;
//! [`Gguf`] owns the whole file and hands out tensor data as slices of it;
//! [`GgufStream`] builds a [`Gguf`] from chunks (a browser `ReadableStream`),
//! copying each byte once into a buffer sized as soon as the header is known.

use crate::error::{Error, Result};
use crate::quant::TensorType;
use std::collections::HashMap;
use std::sync::Arc;

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest metadata array read: each element is held as a [`Value`] (32 bytes), so this
/// bounds what a lying file can make the reader allocate (real vocabularies: < 300 000).
pub const MAX_ARRAY_LEN: u64 = 1 << 22;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: usize = 4;

/// A metadata value. Arrays keep their element type even when empty.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The GGUF value type id.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(..) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    pub fn type_name(&self) -> String {
        match self {
            Value::Array(t, _) => format!("array of {}", type_name(*t)),
            v => type_name(v.type_id()).to_string(),
        }
    }

    /// Any integer value that fits in a u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

fn type_name(t: u32) -> &'static str {
    const N: [&str; 13] =
        ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"];
    N.get(t as usize).copied().unwrap_or("unknown")
}

/// Key-value metadata, in file order, with typed getters that name the key on error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Insert or replace.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.to_string(), self.entries.len());
                self.entries.push((key.to_string(), value));
            }
        }
    }

    pub fn entries(&self) -> &[(String, Value)] {
        &self.entries
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    fn need(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &str, v: &Value) -> Error {
        Error::WrongType { key: key.to_string(), expected: expected.to_string(), found: v.type_name() }
    }

    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.need(key)? {
            Value::Str(s) => Ok(s),
            v => Err(Self::wrong(key, "string", v)),
        }
    }

    /// An unsigned integer of any width (GGUF writers differ in which they use).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.need(key)?;
        v.as_u64().ok_or_else(|| Self::wrong(key, "unsigned integer", v))
    }

    pub fn get_usize(&self, key: &str) -> Result<usize> {
        let v = self.get_u64(key)?;
        usize::try_from(v).map_err(|_| Error::Corrupt(format!("metadata key '{key}' = {v} is too large")))
    }

    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.get_u64(key)?;
        u32::try_from(v).map_err(|_| Error::Corrupt(format!("metadata key '{key}' = {v} is too large")))
    }

    pub fn get_f32(&self, key: &str) -> Result<f32> {
        match self.need(key)? {
            Value::F32(x) => Ok(*x),
            Value::F64(x) => Ok(*x as f32),
            v => Err(Self::wrong(key, "f32", v)),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.need(key)? {
            Value::Bool(b) => Ok(*b),
            v => Err(Self::wrong(key, "bool", v)),
        }
    }

    fn get_array(&self, key: &str, elem: u32) -> Result<&[Value]> {
        match self.need(key)? {
            Value::Array(t, items) if *t == elem => Ok(items),
            v => Err(Self::wrong(key, &format!("array of {}", type_name(elem)), v)),
        }
    }

    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        Ok(self
            .get_array(key, 8)?
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect())
    }

    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        Ok(self
            .get_array(key, 6)?
            .iter()
            .filter_map(|v| match v {
                Value::F32(x) => Some(*x),
                _ => None,
            })
            .collect())
    }

    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>> {
        Ok(self
            .get_array(key, 5)?
            .iter()
            .filter_map(|v| match v {
                Value::I32(x) => Some(*x),
                _ => None,
            })
            .collect())
    }
}

/// One tensor's description. `dims[0]` is the row length (ggml's `ne[0]`).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    pub fn row_len(&self) -> usize {
        self.dims[0] as usize
    }
    pub fn n_rows(&self) -> usize {
        (self.n_elements() / self.dims[0]) as usize
    }
}

/// Everything before the tensor data.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    /// Bytes from `data_offset` to the end of the last tensor.
    pub data_size: u64,
}

impl Header {
    /// The smallest file length that holds every tensor.
    pub fn file_len(&self) -> u64 {
        self.data_offset + self.data_size
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn architecture(&self) -> Result<&str> {
        self.metadata.get_str("general.architecture")
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let have = self.b.len() - self.pos;
        if n > have {
            return Err(Error::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                need: n as u64,
                have: have as u64,
            });
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    /// Counts and lengths are u64 in v2 and v3 (v1, with u32, is not supported).
    fn count(&mut self, what: &str) -> Result<u64> {
        self.u64(what)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(what)?;
        let n = usize::try_from(n).map_err(|_| Error::Corrupt(format!("{what}: length {n} too large")))?;
        let bytes = self.take(n, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::Corrupt(format!("{what}: not valid UTF-8")))
    }
    fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }
}

/// `what` names the value in errors (made once per key, not per array element).
fn read_value(c: &mut Cursor, ty: u32, what: &str, depth: u32) -> Result<Value> {
    Ok(match ty {
        0 => Value::U8(c.arr::<1>(what)?[0]),
        1 => Value::I8(c.arr::<1>(what)?[0] as i8),
        2 => Value::U16(u16::from_le_bytes(c.arr(what)?)),
        3 => Value::I16(i16::from_le_bytes(c.arr(what)?)),
        4 => Value::U32(c.u32(what)?),
        5 => Value::I32(i32::from_le_bytes(c.arr(what)?)),
        6 => Value::F32(f32::from_le_bytes(c.arr(what)?)),
        7 => match c.arr::<1>(what)?[0] {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            b => return Err(Error::Corrupt(format!("{what}: bool byte {b}"))),
        },
        8 => Value::Str(c.string(what)?),
        9 => {
            if depth > 0 {
                return Err(Error::Corrupt(format!("{what}: nested arrays are not supported")));
            }
            let elem = c.u32(what)?;
            let n = c.count(what)?;
            // Each element takes at least one byte: a count beyond the bytes left is a lie
            // (report it as truncation so a stream waits for more) and must not drive an allocation.
            let min = match elem {
                0 | 1 | 7 => 1u64,
                2 | 3 => 2,
                4..=6 => 4,
                8 | 10..=12 => 8,
                9 => 12,
                t => return Err(Error::Corrupt(format!("{what}: unknown array element type {t}"))),
            };
            if n > MAX_ARRAY_LEN {
                return Err(Error::Corrupt(format!("{what}: array of {n} elements (at most {MAX_ARRAY_LEN})")));
            }
            let need = n * min;
            if need > c.remaining() as u64 {
                return Err(Error::Truncated {
                    what: what.to_string(),
                    offset: c.pos as u64,
                    need,
                    have: c.remaining() as u64,
                });
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(read_value(c, elem, what, depth + 1)?);
            }
            Value::Array(elem, items)
        }
        10 => Value::U64(c.u64(what)?),
        11 => Value::I64(i64::from_le_bytes(c.arr(what)?)),
        12 => Value::F64(f64::from_le_bytes(c.arr(what)?)),
        t => return Err(Error::Corrupt(format!("{what}: unknown value type {t}"))),
    })
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

/// Parse the header at the start of `bytes`. The tensor data need not be present.
/// A short buffer gives [`Error::Truncated`] whose `offset + need` says how much is needed.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    let mut c = Cursor { b: bytes, pos: 0 };
    let magic: [u8; 4] = c.arr("magic")?;
    if magic != MAGIC {
        return Err(Error::BadMagic(magic));
    }
    let version = c.u32("version")?;
    if version != 2 && version != 3 {
        return Err(Error::UnsupportedVersion(version));
    }
    let n_tensors = c.count("tensor count")?;
    let n_kv = c.count("metadata count")?;
    // Each entry takes at least 12 bytes; bound counts before allocating.
    for (n, what) in [(n_tensors, "tensor count"), (n_kv, "metadata count")] {
        if n > (1 << 32) {
            return Err(Error::Corrupt(format!("{what} {n} is implausible")));
        }
    }
    let mut metadata = Metadata::new();
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        let ty = c.u32("metadata type")?;
        let v = read_value(&mut c, ty, &format!("value of '{key}'"), 0)?;
        if metadata.get(&key).is_some() {
            return Err(Error::Corrupt(format!("metadata key '{key}' appears twice")));
        }
        metadata.set(&key, v);
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(Error::Corrupt(format!("general.alignment {v:?} is not a power of two"))),
        },
    };
    let mut tensors = Vec::with_capacity((n_tensors as usize).min(c.remaining() / 24));
    let mut names = std::collections::HashSet::new();
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        let n_dims = c.u32("tensor dimension count")? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Error::BadTensor { name, msg: format!("{n_dims} dimensions (1..={MAX_DIMS} allowed)") });
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64("tensor dimension")?);
        }
        let ty_id = c.u32("tensor type")?;
        let offset = c.u64("tensor offset")?;
        let ty = TensorType::from_id(ty_id)
            .ok_or_else(|| Error::UnsupportedTensorType { tensor: name.clone(), ty: TensorType::name_of_id(ty_id) })?;
        let mut n: u64 = 1;
        for &d in &dims {
            if d == 0 {
                return Err(Error::BadTensor { name, msg: format!("zero dimension in {dims:?}") });
            }
            n = n
                .checked_mul(d)
                .filter(|&n| n < (1u64 << 48))
                .ok_or_else(|| Error::BadTensor { name: name.clone(), msg: format!("dimensions {dims:?} overflow") })?;
        }
        if dims[0] % ty.block_len() as u64 != 0 {
            return Err(Error::BadTensor {
                name,
                msg: format!(
                    "row length {} is not a multiple of the {} block length {}",
                    dims[0],
                    ty.name(),
                    ty.block_len()
                ),
            });
        }
        let n_bytes =
            ty.bytes_for(n).ok_or_else(|| Error::BadTensor { name: name.clone(), msg: "size overflow".into() })?;
        if offset % alignment != 0 {
            return Err(Error::BadTensor { name, msg: format!("offset {offset} is not aligned to {alignment}") });
        }
        if !names.insert(name.clone()) {
            return Err(Error::Corrupt(format!("tensor '{name}' appears twice")));
        }
        tensors.push(TensorInfo { name, dims, ty, offset, n_bytes });
    }
    let data_offset = align_up(c.pos as u64, alignment).ok_or_else(|| Error::Corrupt("header size".into()))?;
    let mut data_size = 0u64;
    for t in &tensors {
        let end = t
            .offset
            .checked_add(t.n_bytes)
            .ok_or_else(|| Error::BadTensor { name: t.name.clone(), msg: "offset overflow".into() })?;
        data_size = data_size.max(end);
    }
    // Tensors must not overlap: sort by offset and compare neighbours.
    let mut spans: Vec<(u64, u64, &str)> = tensors.iter().map(|t| (t.offset, t.n_bytes, t.name.as_str())).collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[0].0 + w[0].1 > w[1].0 {
            return Err(Error::Corrupt(format!("tensors '{}' and '{}' overlap", w[0].2, w[1].2)));
        }
    }
    data_offset.checked_add(data_size).ok_or_else(|| Error::Corrupt("data section size overflows".into()))?;
    Ok(Header { version, metadata, tensors, alignment, data_offset, data_size })
}

/// A range of a file's bytes that keeps the file alive: weights can point into the
/// file instead of copying it.
#[derive(Clone, Debug)]
pub struct SharedBytes {
    file: Arc<Vec<u8>>,
    range: std::ops::Range<usize>,
}

impl From<Vec<u8>> for SharedBytes {
    fn from(bytes: Vec<u8>) -> SharedBytes {
        SharedBytes { range: 0..bytes.len(), file: Arc::new(bytes) }
    }
}

impl std::ops::Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.file[self.range.clone()]
    }
}

/// A tensor's data, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub info: &'a TensorInfo,
    pub data: &'a [u8],
    file: &'a Arc<Vec<u8>>,
    start: usize,
}

impl TensorView<'_> {
    /// The data as a handle that shares the file's memory.
    pub fn shared(&self) -> SharedBytes {
        SharedBytes { file: Arc::clone(self.file), range: self.start..self.start + self.data.len() }
    }

    /// All elements as f32.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let mut out = vec![0f32; self.info.n_elements() as usize];
        crate::quant::dequantize(self.info.ty, self.data, &mut out)?;
        Ok(out)
    }
}

/// A whole GGUF file in memory.
pub struct Gguf {
    pub header: Header,
    bytes: Arc<Vec<u8>>,
}

impl Gguf {
    /// Take ownership of a complete file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf> {
        let header = parse_header(&bytes)?;
        Gguf::with_header(header, bytes)
    }

    fn with_header(header: Header, bytes: Vec<u8>) -> Result<Gguf> {
        let need = header.file_len();
        if (bytes.len() as u64) < need {
            return Err(Error::Truncated {
                what: "tensor data".into(),
                offset: bytes.len() as u64,
                need: need - bytes.len() as u64,
                have: 0,
            });
        }
        Ok(Gguf { header, bytes: Arc::new(bytes) })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<Gguf> {
        let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        Gguf::from_bytes(bytes)
    }

    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// The file's bytes (what receipts hash).
    pub fn file_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        let info = self.header.tensor_info(name).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let start = (self.header.data_offset + info.offset) as usize;
        Ok(TensorView { info, data: &self.bytes[start..start + info.n_bytes as usize], file: &self.bytes, start })
    }
}

/// Builds a [`Gguf`] from a stream of chunks.
#[derive(Default)]
pub struct GgufStream {
    buf: Vec<u8>,
    header: Option<Header>,
    /// Don't re-parse the header before this many bytes have arrived.
    next_try: usize,
}

impl GgufStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append a chunk. Errors as soon as the header is known to be bad.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        if self.header.is_none() && self.buf.len() >= self.next_try {
            match parse_header(&self.buf) {
                Ok(h) => {
                    // The size comes from the file: a claim this platform cannot hold is an
                    // error now, not an abort in `reserve` (or, on wasm32, a truncated usize).
                    let fits = usize::try_from(h.file_len())
                        .is_ok_and(|t| self.buf.try_reserve(t.saturating_sub(self.buf.len())).is_ok());
                    if !fits {
                        return Err(Error::Io(format!("cannot allocate {} bytes for the model file", h.file_len())));
                    }
                    self.header = Some(h);
                }
                Err(Error::Truncated { offset, need, .. }) => {
                    // Each attempt re-reads the whole prefix: also waiting for a quarter more
                    // bytes keeps the total work linear in the header size (small chunks made
                    // it quadratic: 30 s for Gemma's 6.5 MB header in 4 KiB chunks).
                    let needed = offset.saturating_add(need).min(usize::MAX as u64) as usize;
                    self.next_try = needed.max(self.buf.len() + self.buf.len() / 4);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The header, once enough bytes have arrived: at the latest when 5/4 of its
    /// length have (see `push`), never before all of it has.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    pub fn bytes_received(&self) -> usize {
        self.buf.len()
    }

    /// Total bytes the file needs, once the header is known.
    pub fn expected_len(&self) -> Option<u64> {
        self.header.as_ref().map(|h| h.file_len())
    }

    /// End of stream: the complete file, or the error saying what is missing.
    pub fn finish(self) -> Result<Gguf> {
        match self.header {
            Some(header) => Gguf::with_header(header, self.buf),
            None => Gguf::from_bytes(self.buf),
        }
    }
}

/// A tensor to write: name, dims (row length first), type, and its raw block bytes.
pub struct TensorData {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: TensorType,
    pub data: Vec<u8>,
}

pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::Str(s) => {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(t, items) => {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for it in items {
                write_value(out, it);
            }
        }
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

/// Serialize a GGUF v3 file, aligned as `general.alignment` says (default 32).
pub fn write(metadata: &Metadata, tensors: &[TensorData]) -> Result<Vec<u8>> {
    // Readers place the data by this key, so the layout must follow it.
    let a = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => v
            .as_u64()
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| Error::InvalidArgument(format!("general.alignment {v:?} is not a power of two")))?,
    };
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.entries().len() as u64).to_le_bytes());
    for (k, v) in metadata.entries() {
        write_value(&mut out, &Value::Str(k.clone()));
        out.extend_from_slice(&v.type_id().to_le_bytes());
        write_value(&mut out, v);
    }
    let mut offset = 0u64;
    for t in tensors {
        let n: u64 = t.dims.iter().product();
        if t.ty.bytes_for(n) != Some(t.data.len() as u64) {
            return Err(Error::InvalidArgument(format!(
                "tensor '{}': {} bytes for {n} {} elements",
                t.name,
                t.data.len(),
                t.ty.name()
            )));
        }
        write_value(&mut out, &Value::Str(t.name.clone()));
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&(t.ty as u32).to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset = align_up(offset + t.data.len() as u64, a).unwrap_or(u64::MAX);
    }
    let pad = |out: &mut Vec<u8>| out.resize(align_up(out.len() as u64, a).unwrap_or(0) as usize, 0);
    // The data section starts aligned even when it holds nothing, as readers (this one included) expect.
    pad(&mut out);
    for t in tensors {
        pad(&mut out);
        out.extend_from_slice(&t.data);
    }
    Ok(out)
}
