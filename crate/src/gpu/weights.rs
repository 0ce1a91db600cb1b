//! Weights on the device: matrices as their GGUF bytes (blocks padded to whole words), norm
//! vectors as the CPU's mantissas; products of one input (q, k, v; gate, up) stacked in one
//! buffer, so that one dispatch makes them all.

use super::{Buf, GpuContext};
use crate::backend::exact::{ExactWeight, MatrixData};
use crate::error::Result;
use crate::gguf::TensorView;
use crate::model::Weights;
use crate::quant::TensorType;

/// A slice of a matrix's rows in one buffer (each within the 128 MiB binding limit).
pub struct Chunk {
    pub buf: Buf,
    pub row0: usize,
    pub rows: usize,
    /// The index in `buf` of the chunk's first row: 0, or past the rows of the weights
    /// stacked before it ([`stack_products`]).
    pub at: usize,
}

pub enum GpuWeight {
    /// The GGUF bytes of whole rows, split into chunks that fit a binding.
    Matrix { rows: usize, cols: usize, ty: TensorType, max_exp: i32, chunks: Vec<Chunk> },
    /// A norm weight: mantissas (|m| < 2^30) and one exponent, as the CPU computes them.
    Vector { len: usize, m: Buf, e: i32 },
}

impl GpuWeight {
    /// The width of a product by this weight (its rows; a vector's length).
    pub fn out_len(&self) -> usize {
        match self {
            GpuWeight::Matrix { rows, .. } => *rows,
            GpuWeight::Vector { len, .. } => *len,
        }
    }

    /// Upload a GGUF tensor. It is validated and converted as [`ExactWeight::from_view`] does
    /// (which also gives the largest scale exponent); matrices keep their file bytes.
    pub fn from_view(ctx: &GpuContext, t: TensorView) -> Result<GpuWeight> {
        let data = t.data;
        match ExactWeight::from_view(t)? {
            ExactWeight::Vector { m, e } => {
                Ok(GpuWeight::Vector { len: m.len(), m: ctx.storage_init("norm", bytemuck::cast_slice(&m))?, e })
            }
            ExactWeight::Matrix(mat) => {
                let ty = match &mat.data {
                    MatrixData::Blocks { ty, .. } => *ty,
                    MatrixData::Elems { .. } => t.info.ty,
                };
                let (bb, pad) = (ty.block_bytes(), padded_block(ty));
                let (row_bytes, nbr) = (mat.cols / ty.block_len() * bb, mat.cols / ty.block_len());
                let per_chunk = (ctx.max_binding as usize / (nbr * pad).max(1)).max(1);
                let mut chunks = Vec::new();
                let mut row0 = 0;
                while row0 < mat.rows {
                    let rows = per_chunk.min(mat.rows - row0);
                    let src = &data[row0 * row_bytes..(row0 + rows) * row_bytes];
                    let mut bytes = Vec::with_capacity(rows * nbr * pad + 4);
                    for b in src.chunks_exact(bb) {
                        pad_block(ty, b, &mut bytes);
                    }
                    bytes.resize(bytes.len().next_multiple_of(4), 0);
                    chunks.push(Chunk {
                        buf: ctx.storage_init(&format!("weight {row0}.."), &bytes)?,
                        row0,
                        rows,
                        at: 0,
                    });
                    row0 += rows;
                }
                Ok(GpuWeight::Matrix { rows: mat.rows, cols: mat.cols, ty, max_exp: mat.max_exp, chunks })
            }
        }
    }
}

/// Bytes of a block on the GPU: blocks of 34, 18, 22 and 210 bytes are padded to a
/// multiple of 4 so that every word of quants is aligned (`shaders/weights.wgsl`).
fn padded_block(ty: TensorType) -> usize {
    match ty {
        TensorType::Q8_0 | TensorType::Q4_0 | TensorType::Q5_0 | TensorType::Q6K => ty.block_bytes() + 2,
        _ => ty.block_bytes(),
    }
}

/// Append block `b` of `ty` as the GPU reads it: two zero bytes after the leading f16 scale
/// (Q8_0, Q4_0, Q5_0) or at the end (Q6_K, whose scale comes last); other types unchanged.
fn pad_block(ty: TensorType, b: &[u8], out: &mut Vec<u8>) {
    match ty {
        TensorType::Q8_0 | TensorType::Q4_0 | TensorType::Q5_0 => {
            out.extend_from_slice(&b[..2]);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&b[2..]);
        }
        TensorType::Q6K => {
            out.extend_from_slice(b);
            out.extend_from_slice(&[0, 0]);
        }
        _ => out.extend_from_slice(b),
    }
}

/// Stack each layer's q, k, v and its gate, up (where each is one chunk of the same type and
/// width, and together they fit a binding) into one buffer each: a matrix product over them is
/// then one dispatch. Each weight keeps its rows, now at an offset in the shared buffer.
pub fn stack_products(ctx: &GpuContext, w: &mut Weights<GpuWeight>) -> Result<()> {
    for l in &mut w.layers {
        stack(ctx, &mut [&mut l.wq, &mut l.wk, &mut l.wv])?;
        stack(ctx, &mut [&mut l.gate, &mut l.up])?;
    }
    Ok(())
}

/// [`stack_products`] for one set of weights: whether they were stacked (they are left as they
/// are when they do not qualify).
pub fn stack(ctx: &GpuContext, ws: &mut [&mut GpuWeight]) -> Result<bool> {
    let mut parts = Vec::with_capacity(ws.len());
    for w in ws.iter() {
        match &**w {
            GpuWeight::Matrix { rows, cols, ty, chunks, .. } if chunks.len() == 1 => {
                parts.push((*rows, *cols, *ty, chunks[0].buf.size()));
            }
            _ => return Ok(false),
        }
    }
    let (cols, ty) = (parts[0].1, parts[0].2);
    let bytes: u64 = parts.iter().map(|p| p.3).sum();
    let row_bytes = (cols / ty.block_len() * padded_block(ty)) as u64;
    // Rows must follow each other: each buffer holds exactly its rows (no trailing padding).
    let whole = parts.iter().all(|p| p.1 == cols && p.2 == ty && p.3 == p.0 as u64 * row_bytes);
    if !whole || bytes > ctx.max_binding {
        return Ok(false);
    }
    let buf = ctx.weight_buffer("weights stacked", bytes)?;
    let mut enc = ctx.encoder();
    let (mut at, mut offset) = (0, 0);
    for w in ws.iter_mut() {
        if let GpuWeight::Matrix { rows, chunks, .. } = &mut **w {
            enc.copy_buffer_to_buffer(&chunks[0].buf, 0, &buf, offset, chunks[0].buf.size());
            offset += chunks[0].buf.size();
            chunks[0] = Chunk { buf: Buf::owned(buf.clone()), row0: 0, rows: *rows, at };
            at += *rows;
        }
    }
    ctx.submit(enc);
    Ok(true)
}
