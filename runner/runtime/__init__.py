"""The platform under a run: backend, threads and GPUs, interrupts, security, console output."""
