"""The benchmark of distsoftmax (not part of the installed package): see bench/README.md."""
