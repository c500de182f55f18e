// The SafeTensors module; see docs/DESIGN.md.
