//! Wire types for the protocols pvgate serves.
