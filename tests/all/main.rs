//! SoulBox's integration tests: real wasmtime, real interpreters, no mocks.
//!
//! Needs the runtimes installed (`soulbox runtimes fetch`), as `.ci/run` does first.

mod cache;
mod checkpoint;
mod concurrency;
mod containers;
mod home;
mod isolation;
mod javascript;
mod limits;
mod machines;
mod network;
mod packages;
mod python;
mod readme;
mod rewind;
mod sandbox;
mod sandbox_files;
