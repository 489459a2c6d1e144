//! The program language: source text in, a [`ir::Circuit`] out.

pub mod ir;
