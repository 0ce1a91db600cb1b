// numerics::normalize_bits over one row of 64-bit accumulators (nacc), after bringing each group
// of `group` columns from its own exponent (ngexp) to the row's largest (shl, i.e. rshr): matmul
// and embed have one group per row, rms_norm one per norm group, attention one per head. A
// group exponent of i32 min marks an all-zero group that has no exponent (it takes no part in
// the row's maximum; a row with none keeps exponent 0). norm_exp gives the row's exponent and
// shift, norm_value each rounded mantissa: normalize_row.wgsl writes them out; gated_acc.wgsl
// uses them on the fly. The including kernel declares nacc, ngexp, WG and runs one workgroup
// per row. Prepended: i64.wgsl, reduce.wgsl.

struct NormRow {
    // Accumulator row i is at nacc[i·stride + col0], its group exponents at
    // ngexp[(row0 + i)·ng], its output (normalize_row) at NORM_M[i·cols] and NORM_E[row0 + i].
    i: u32,
    row0: u32,
    cols: u32,
    group: u32,
    ng: u32,
    // Mantissa width: max |m| in [2^(bits−1), 2^bits).
    bits: u32,
    // Added to every group exponent.
    bias: i32,
    // Row stride and first column in nacc (products that share one buffer: q, k, v; gate, up).
    stride: u32,
    col0: u32,
}

fn norm_aligned(r: NormRow, c: u32, emax: i32) -> vec2<u32> {
    let ge = ngexp[(r.row0 + r.i) * r.ng + c / r.group];
    if ge == NORM_NONE {
        return vec2<u32>(0u, 0u);
    }
    return i64_shl_s(nacc[r.i * r.stride + r.col0 + c], ge + r.bias - emax);
}

// The row's exponent before rounding and the shift that rounds it to `bits`: (emax, s). All
// invocations of the workgroup call it (barriers), and get the same values.
fn norm_exp(r: NormRow, lid: u32) -> vec2<i32> {
    var best = NORM_NONE;
    for (var g = lid; g < r.ng; g += WG) {
        best = max(best, ngexp[(r.row0 + r.i) * r.ng + g]);
    }
    let top = max_e(lid, best);
    let emax = select(top + r.bias, 0, top == NORM_NONE);
    var mx = vec2<u32>(0u, 0u);
    for (var c = lid; c < r.cols; c += WG) {
        mx = u64_max(mx, i64_abs(norm_aligned(r, c, emax)));
    }
    return vec2<i32>(emax, norm_shift(max_m(lid, mx), r.bits));
}

// Column c's rounded mantissa, given norm_exp's (emax, s); the row's exponent is emax + s.
fn norm_value(r: NormRow, c: u32, es: vec2<i32>) -> i32 {
    return i64_to_i32(i64_shl_s(norm_aligned(r, c, es.x), -es.y));
}
