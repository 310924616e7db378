"""The coordinator: round engine (state machine), servicer, checkpoints and the daemon."""
