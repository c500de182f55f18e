// The Tokenizers module; see docs/DESIGN.md.
