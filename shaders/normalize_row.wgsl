// norm_row.wgsl's row written out, to NORM_M and NORM_E (the including kernel's names for them,
// substituted by kernels.rs). normalize.wgsl runs it alone; quantize.wgsl, add.wgsl, rope.wgsl
// and add_bias.wgsl run it first on an input that is still accumulators (an op's output
// normalized by its consumer: one dispatch fewer). Ends with a storage barrier, so the
// workgroup then reads what it wrote. Prepended: i64.wgsl, norm_row.wgsl.

fn normalize_row(r: NormRow, lid: u32) {
    let es = norm_exp(r, lid);
    for (var c = lid; c < r.cols; c += WG) {
        NORM_M[r.i * r.cols + c] = norm_value(r, c, es);
    }
    if lid == 0u {
        NORM_E[r.row0 + r.i] = es.x + es.y;
    }
    storageBarrier();
}
