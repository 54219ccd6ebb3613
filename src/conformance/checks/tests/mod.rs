//! Tests of the decoder and checks together: hand-made exchanges per check, the real
//! captures of `shared/captures/`, traces, and robustness against arbitrary bytes.

mod build;
mod index;
mod nat;
mod props;
mod real;
mod synthetic;
