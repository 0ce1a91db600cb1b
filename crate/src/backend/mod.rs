//! Implementations of the model op set ([`crate::model::Ops`]).

pub(crate) mod busy;
pub mod exact;
pub mod f32;
