//! The controllers that make stored objects act as they would on a cluster. Each runs in the
//! control plane's process on the store, woken by its events and by a periodic resync.

pub mod deployment;
pub mod endpoints;
pub mod images;
pub mod intstr;
pub mod kubelet;
pub mod prometheus;
pub mod proxy;
