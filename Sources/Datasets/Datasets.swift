// The Datasets module; see docs/DESIGN.md.
