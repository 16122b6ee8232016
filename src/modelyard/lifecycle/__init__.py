"""The loop after monitoring: triggers, training runs, the evaluation gate, and the controller
that steps rollouts forward or rolls them back."""
