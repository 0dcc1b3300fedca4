"""Where a run executes: in this process, or several processes launched by torchrun."""

from bootstrap_repro.runtimes._distributed import launch_distributed, wants_distributed

__all__ = ["launch_distributed", "wants_distributed"]
