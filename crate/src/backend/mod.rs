//! Implementations of the model op set ([`crate::model::Ops`]).

pub mod f32;
pub mod exact;
