//! Implementations of the model op set ([`crate::model::Ops`]).

pub mod exact;
pub mod f32;
