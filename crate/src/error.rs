//! The crate's one error type. Every fallible path on data from outside (model
//! files, prompts, receipts, the GPU) returns one of these, never a panic.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The input ended before a complete structure could be read.
    #[error("truncated {what}: needs {need} bytes at offset {offset}, only {have} available")]
    Truncated { what: String, offset: u64, need: u64, have: u64 },
    #[error("not a GGUF file: magic bytes {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    UnsupportedVersion(u32),
    /// Structurally invalid content: impossible sizes, bad UTF-8, overlapping tensors...
    #[error("corrupt model file: {0}")]
    Corrupt(String),
    #[error("tensor '{tensor}' has unsupported type {ty}")]
    UnsupportedTensorType { tensor: String, ty: String },
    #[error("metadata key '{0}' is missing")]
    MissingKey(String),
    #[error("metadata key '{key}' is {found}, expected {expected}")]
    WrongType { key: String, expected: String, found: String },
    #[error("tensor '{0}' is missing")]
    MissingTensor(String),
    #[error("tensor '{name}': {msg}")]
    BadTensor { name: String, msg: String },
    #[error("unsupported model architecture '{0}'")]
    UnsupportedArchitecture(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{len} tokens do not fit the context of {ctx}")]
    ContextOverflow { len: usize, ctx: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("i/o: {0}")]
    Io(String),
    /// No GPU adapter (natively: install a Vulkan driver, e.g. Mesa's lavapipe in `mesa-vulkan-drivers`).
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("GPU adapter lacks limit {name}: needs {need}, has {have}")]
    MissingLimit { name: String, need: u64, have: u64 },
    #[error("GPU adapter lacks feature {0}")]
    MissingFeature(String),
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// A kernel failed shader or pipeline validation.
    #[error("GPU kernel {kernel}: {msg}")]
    Shader { kernel: String, msg: String },
    /// A receipt that cannot be read: bad JSON, a wrong length, an unknown field value.
    #[error("malformed receipt: {0}")]
    BadReceipt(String),
    /// A receipt of a format version this build does not know.
    #[error("unsupported receipt version {0} (supported: 1)")]
    UnsupportedReceiptVersion(u32),
    /// The caller cancelled the work (an `AbortSignal`).
    #[error("aborted: {0}")]
    Aborted(String),
    /// The engine is generating: one generation at a time per engine.
    #[error("busy: {0}")]
    Busy(String),
    /// Any other error the GPU API reports (validation of a command, internal error).
    #[error("GPU: {0}")]
    Gpu(String),
}

impl Error {
    /// A stable, machine-readable code (what JavaScript sees as `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "TRUNCATED",
            Error::BadMagic(_) => "BAD_MAGIC",
            Error::UnsupportedVersion(_) => "UNSUPPORTED_VERSION",
            Error::BadReceipt(_) => "BAD_RECEIPT",
            Error::UnsupportedReceiptVersion(_) => "UNSUPPORTED_RECEIPT_VERSION",
            Error::Corrupt(_) => "CORRUPT",
            Error::UnsupportedTensorType { .. } => "UNSUPPORTED_TENSOR_TYPE",
            Error::MissingKey(_) => "MISSING_KEY",
            Error::WrongType { .. } => "WRONG_TYPE",
            Error::MissingTensor(_) => "MISSING_TENSOR",
            Error::BadTensor { .. } => "BAD_TENSOR",
            Error::UnsupportedArchitecture(_) => "UNSUPPORTED_ARCHITECTURE",
            Error::Tokenizer(_) => "TOKENIZER",
            Error::ContextOverflow { .. } => "CONTEXT_OVERFLOW",
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::Io(_) => "IO",
            Error::NoAdapter(_) => "NO_ADAPTER",
            Error::MissingLimit { .. } => "MISSING_LIMIT",
            Error::MissingFeature(_) => "MISSING_FEATURE",
            Error::DeviceLost(_) => "DEVICE_LOST",
            Error::OutOfMemory(_) => "OUT_OF_MEMORY",
            Error::Shader { .. } => "SHADER",
            Error::Gpu(_) => "GPU",
            Error::Aborted(_) => "ABORTED",
            Error::Busy(_) => "BUSY",
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}
