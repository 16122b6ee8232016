"""Live monitoring: window profiles from served traffic, the prediction log, feedback, alerts."""
