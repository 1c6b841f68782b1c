//! The simulated hypervisor.
