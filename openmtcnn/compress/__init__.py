"""Making the nets smaller: memory and MAC estimates, pruning, int8 quantisation, distillation."""
