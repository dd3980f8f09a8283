"""Detection metrics over a val set, and per-image AP statistics with a paired bootstrap."""
