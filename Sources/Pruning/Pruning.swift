// The Pruning module; see docs/DESIGN.md.
