// The Llama module; see docs/DESIGN.md.
