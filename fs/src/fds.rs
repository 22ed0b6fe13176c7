//! The descriptor places the view's processes hand each other: podrun gives the keeper
//! its descriptors at these numbers, the keeper gives them to each server, and a server
//! left without keepers starts one with them at the same places (rescue.rs). The no-std
//! keeper (pause/src/keeper.rs) has its own copy of the numbers. Only numbers here.

use std::os::fd::RawFd;

/// Where the keeper is given, and gives each server, the FUSE connection.
pub const FUSE_FD: RawFd = 3;
/// The keeper's: the agent's socket, where container processes hand over their seccomp
/// listeners. A server's: its channel from the keeper, which sends it those listeners.
pub const AGENT_FD: RawFd = 4;
/// The memory servers share (`server::Shared`), a memfd.
pub const SHARED_FD: RawFd = 5;
/// The server's binary, podrun-view (for a keeper to start servers from).
pub const SERVER_EXE_FD: RawFd = 6;
/// The view's lock file (`<root>/procview.active`): the active keeper holds it; the server
/// has a description of its own, to look whether a keeper does.
pub const LOCK_FD: RawFd = 7;
/// The server's: the keeper's binary, to start a keeper when none is left.
pub const KEEPER_EXE_FD: RawFd = 9;
/// The server's: the agent's socket, for that keeper.
pub const LISTEN_FD: RawFd = 10;
