"""``python -m modelyard.cli`` runs the CLI (the demo starts its server this way)."""

from modelyard.cli import main

main()
