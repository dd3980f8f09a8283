"""Training: the loop, the run directory, preemption, the parameter-server workers and their
launcher."""
