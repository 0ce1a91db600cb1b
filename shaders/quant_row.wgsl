// A kernel's own output row, 64-bit accumulators with one exponent (one group per row, as
// rms_norm.wgsl and gated_acc.wgsl write them), normalized as normalize.wgsl would and quantized
// as quantize.wgsl would for a matrix product (blocks of 32 over the whole row): the product
// that follows needs no quantize dispatch. The kernel declares acc, gexp (its output), xq
// (array<u32>), xblk (array<vec4<i32>>), emax and WG, writes row i, then calls quantize_row
// from uniform control flow. Prepended: i64.wgsl, reduce.wgsl, quant_block.wgsl.

var<private> qr_base: u32;
var<private> qr_shift: i32;

fn quant_in(at: u32) -> i32 {
    return i64_to_i32(i64_shl_s(acc[qr_base + at], -qr_shift));
}

fn quant_word(at: u32, w: u32) {
    xq[at] = w;
}

fn quant_blk(at: u32, v: vec4<i32>) {
    xblk[at] = v;
}

fn quantize_row(i: u32, lid: u32, cols: u32, bits: u32) {
    // The row this workgroup wrote, and its exponent, are visible.
    storageBarrier();
    let ge = gexp[i];
    // An all-zero group without an exponent normalizes to exponent 0.
    let er = select(ge, 0, ge == NORM_NONE);
    qr_base = i * cols;
    var mx = vec2<u32>(0u, 0u);
    for (var c = lid; c < cols; c += WG) {
        mx = u64_max(mx, i64_abs(acc[qr_base + c]));
    }
    qr_shift = norm_shift(max_m(lid, mx), bits);
    let e = er + qr_shift;
    let best = max_e(lid, quantize_segments(lid, cols, cols, e, 0u, i * (cols / 4u), i * (cols / 32u)));
    if lid == 0u {
        emax[i] = best;
    }
}
