//! The real-Xen platform: placeholder until the real-Xen issue builds it.
