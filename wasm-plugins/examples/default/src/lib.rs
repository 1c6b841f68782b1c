//! The gateway's built-in policy as a plugin: every `Policy` method keeps its
//! default (see `pvgate_policy_sdk::defaults`). Loading it must change
//! nothing, which makes it the baseline for the host's tests and benchmarks.
#![no_std]

struct Default;

impl pvgate_policy_sdk::Policy for Default {}

pvgate_policy_sdk::export!(Default);
