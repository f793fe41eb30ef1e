"""Training from scratch: the multi-task loss with online hard example mining, and the trainer."""
