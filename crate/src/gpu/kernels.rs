//! The kernels: one `.wgsl` file each in `shaders/`, with the shared helper files they
//! need prepended, and their override constants. A [`KernelKey`] names one pipeline; its
//! `Display` string is also the wgpu label.

use crate::quant::TensorType;
use std::fmt;

const I64: &str = include_str!("../../../shaders/i64.wgsl");
const WEIGHTS: &str = include_str!("../../../shaders/weights.wgsl");
const DOT4_PACKED: &str = include_str!("../../../shaders/dot4_packed.wgsl");
const DOT4_EMULATED: &str = include_str!("../../../shaders/dot4_emulated.wgsl");
const EXP2: &str = include_str!("../../../shaders/exp2.wgsl");
const SAMPLE_PARAMS: &str = include_str!("../../../shaders/sample_params.wgsl");
const NORM_ROW: &str = include_str!("../../../shaders/norm_row.wgsl");
const NORMALIZE_ROW: &str = include_str!("../../../shaders/normalize_row.wgsl");
const GATING: &str = include_str!("../../../shaders/gating.wgsl");
const QUANT_BLOCK: &str = include_str!("../../../shaders/quant_block.wgsl");
const QUANT_ROW: &str = include_str!("../../../shaders/quant_row.wgsl");
const ROPE_PAIR: &str = include_str!("../../../shaders/rope_pair.wgsl");
const Q16: &str = include_str!("../../../shaders/q16.wgsl");
const ATTEND: &str = include_str!("../../../shaders/attend.wgsl");
const QKV_ROWS: &str = include_str!("../../../shaders/qkv_rows.wgsl");
const KV_CACHE: &str = include_str!("../../../shaders/kv_cache.wgsl");
const RSQRT: &str = include_str!("../../../shaders/rsqrt.wgsl");
const RMS_GROUP: &str = include_str!("../../../shaders/rms_group.wgsl");
const REDUCE: &str = include_str!("../../../shaders/reduce.wgsl");

/// norm_row.wgsl and normalize_row.wgsl writing to a kernel's buffers `m` and `e`.
fn normalize_row(m: &str, e: &str) -> String {
    [REDUCE, NORM_ROW, &NORMALIZE_ROW.replace("NORM_M", m).replace("NORM_E", e)].join("\n")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Quantize,
    /// x rows by outputs per tile, and invocations per tile (split-K): `matmul.wgsl`.
    Matmul {
        ty: TensorType,
        x_rows: u32,
        outputs: u32,
        lanes: u32,
    },
    Normalize,
    Embed(TensorType),
    RmsNorm,
    Scale,
    Rope {
        neox: bool,
    },
    Gated {
        gelu: bool,
    },
    /// The gated unit on a gate and an up product still as accumulators in one buffer.
    GatedAcc {
        gelu: bool,
    },
    Add,
    /// A residual add in place and the RMSNorm after it (`add_norm.wgsl`).
    AddNorm,
    Argmax,
    Attention,
    /// A decoder's q, k and v into attention: RoPE and quantization in one pass (`attn_in.wgsl`).
    AttnIn {
        neox: bool,
    },
    /// A decode step's q, k and v into attention and the attention itself, in one dispatch
    /// (`attn_step.wgsl`).
    AttnStep {
        neox: bool,
    },
    /// Encoders: a bias added to every row, LayerNorm, the erf GELU, mean pooling with the L2 norm.
    AddBias,
    LayerNorm,
    Gelu,
    PoolL2,
    /// Seeded sampling: each token's key and weight, radix-select bins, the select step.
    SampleWeights,
    SampleHist,
    SampleSelect,
}

/// One pipeline: a kernel and the dot-product path it was built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub kernel: Kernel,
    pub dot4_packed: bool,
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kernel::Quantize => write!(f, "quantize"),
            Kernel::Matmul { ty, x_rows, outputs, lanes: 1 } => write!(f, "matmul[{}][{x_rows}x{outputs}]", ty.name()),
            Kernel::Matmul { ty, x_rows, outputs, lanes } => {
                write!(f, "matmul[{}][{x_rows}x{outputs}/{lanes}]", ty.name())
            }
            Kernel::Normalize => write!(f, "normalize"),
            Kernel::Embed(t) => write!(f, "embed[{}]", t.name()),
            Kernel::RmsNorm => write!(f, "rms_norm"),
            Kernel::Scale => write!(f, "scale"),
            Kernel::Rope { neox } => write!(f, "rope[{}]", if *neox { "neox" } else { "norm" }),
            Kernel::Gated { gelu } => write!(f, "{}", if *gelu { "geglu" } else { "swiglu" }),
            Kernel::GatedAcc { gelu } => write!(f, "{}[acc]", if *gelu { "geglu" } else { "swiglu" }),
            Kernel::Add => write!(f, "add"),
            Kernel::AddNorm => write!(f, "add_norm"),
            Kernel::Argmax => write!(f, "argmax"),
            Kernel::Attention => write!(f, "attention"),
            Kernel::AttnIn { neox } => write!(f, "attn_in[{}]", if *neox { "neox" } else { "norm" }),
            Kernel::AttnStep { neox } => write!(f, "attn_step[{}]", if *neox { "neox" } else { "norm" }),
            Kernel::AddBias => write!(f, "add_bias"),
            Kernel::LayerNorm => write!(f, "layer_norm"),
            Kernel::Gelu => write!(f, "gelu"),
            Kernel::PoolL2 => write!(f, "pool_l2"),
            Kernel::SampleWeights => write!(f, "sample_weights"),
            Kernel::SampleHist => write!(f, "sample_hist"),
            Kernel::SampleSelect => write!(f, "sample_select"),
        }
    }
}

impl fmt::Display for KernelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kernel {
            Kernel::Matmul { .. } | Kernel::Attention | Kernel::AttnStep { .. } => {
                write!(f, "{}[dot4={}]", self.kernel, if self.dot4_packed { "packed" } else { "emulated" })
            }
            _ => write!(f, "{}", self.kernel),
        }
    }
}

impl KernelKey {
    /// The WGSL source: helpers, then the kernel's own file.
    pub fn source(&self) -> String {
        let dot4 = if self.dot4_packed { DOT4_PACKED } else { DOT4_EMULATED };
        let parts: &[&str] = match self.kernel {
            Kernel::Quantize => {
                let own = include_str!("../../../shaders/quantize.wgsl");
                return [I64, QUANT_BLOCK, &normalize_row("xm", "xe"), own].join("\n");
            }
            Kernel::Normalize => {
                return [I64, &normalize_row("om", "oe"), include_str!("../../../shaders/normalize.wgsl")].join("\n")
            }
            Kernel::Rope { .. } => {
                return [I64, &normalize_row("xm", "xe"), ROPE_PAIR, include_str!("../../../shaders/rope.wgsl")]
                    .join("\n")
            }
            Kernel::Add => {
                return [I64, &normalize_row("ym", "ye"), include_str!("../../../shaders/add.wgsl")].join("\n")
            }
            Kernel::AddNorm => {
                // norm_row.wgsl reads y from the accumulators the norm then overwrites.
                let norm_row = NORM_ROW.replace("nacc", "acc").replace("ngexp", "gexp");
                let own = include_str!("../../../shaders/add_norm.wgsl");
                return [I64, RSQRT, RMS_GROUP, REDUCE, &norm_row, QUANT_BLOCK, QUANT_ROW, own].join("\n");
            }
            Kernel::Matmul { .. } => &[I64, dot4, WEIGHTS, include_str!("../../../shaders/matmul.wgsl")],
            Kernel::Embed(_) => &[I64, WEIGHTS, include_str!("../../../shaders/embed.wgsl")],
            Kernel::AddBias => {
                return [I64, &normalize_row("xm", "xe"), include_str!("../../../shaders/add_bias.wgsl")].join("\n")
            }
            Kernel::RmsNorm => {
                &[I64, RSQRT, RMS_GROUP, REDUCE, QUANT_BLOCK, QUANT_ROW, include_str!("../../../shaders/rms_norm.wgsl")]
            }
            Kernel::LayerNorm => &[I64, RSQRT, REDUCE, include_str!("../../../shaders/layer_norm.wgsl")],
            Kernel::PoolL2 => &[I64, RSQRT, REDUCE, include_str!("../../../shaders/pool_l2.wgsl")],
            Kernel::Gelu => &[I64, Q16, include_str!("../../../shaders/gelu.wgsl")],
            Kernel::Scale => &[I64, include_str!("../../../shaders/scale.wgsl")],

            Kernel::Gated { .. } => &[I64, Q16, GATING, include_str!("../../../shaders/gated.wgsl")],
            Kernel::GatedAcc { .. } => &[
                I64,
                Q16,
                GATING,
                REDUCE,
                NORM_ROW,
                QUANT_BLOCK,
                QUANT_ROW,
                include_str!("../../../shaders/gated_acc.wgsl"),
            ],
            Kernel::Argmax => &[include_str!("../../../shaders/argmax.wgsl")],
            Kernel::Attention => {
                &[I64, EXP2, dot4, REDUCE, KV_CACHE, ATTEND, include_str!("../../../shaders/attention.wgsl")]
            }
            Kernel::AttnIn { .. } => &[
                I64,
                QUANT_BLOCK,
                REDUCE,
                NORM_ROW,
                ROPE_PAIR,
                QKV_ROWS,
                KV_CACHE,
                include_str!("../../../shaders/attn_in.wgsl"),
            ],
            Kernel::AttnStep { .. } => &[
                I64,
                EXP2,
                dot4,
                QUANT_BLOCK,
                REDUCE,
                NORM_ROW,
                ROPE_PAIR,
                QKV_ROWS,
                KV_CACHE,
                ATTEND,
                include_str!("../../../shaders/attn_step.wgsl"),
            ],
            Kernel::SampleWeights => &[I64, EXP2, SAMPLE_PARAMS, include_str!("../../../shaders/sample_weights.wgsl")],
            Kernel::SampleHist => &[I64, SAMPLE_PARAMS, include_str!("../../../shaders/sample_hist.wgsl")],
            Kernel::SampleSelect => &[I64, SAMPLE_PARAMS, include_str!("../../../shaders/sample_select.wgsl")],
        };
        parts.join("\n")
    }

    /// Override constants.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        match self.kernel {
            Kernel::Matmul { ty, x_rows, outputs, lanes } => {
                vec![("TYPE", ty as u32 as f64), ("XR", x_rows as f64), ("WO", outputs as f64), ("LANES", lanes as f64)]
            }
            Kernel::Embed(t) => vec![("TYPE", t as u32 as f64)],
            Kernel::Rope { neox } | Kernel::AttnIn { neox } | Kernel::AttnStep { neox } => {
                vec![("NEOX", neox as u32 as f64)]
            }
            Kernel::Gated { gelu } | Kernel::GatedAcc { gelu } => vec![("GELU", gelu as u32 as f64)],
            _ => vec![],
        }
    }
}
