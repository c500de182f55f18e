// The Evaluation module; see docs/DESIGN.md.
