//! `soulbox serve` end to end: a real server process on loopback, a real HTTP client
//! (reqwest), and the official MCP Python SDK.

mod api;
mod cluster;
mod cluster_routing;
mod config;
mod containers;
mod durability;
mod e2b;
mod fuzz;
mod mcp;
mod protection;
mod security;
mod soak;
mod support;
