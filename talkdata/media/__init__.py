"""Media I/O: decoding at a target frame rate, encoding crops and audio."""
