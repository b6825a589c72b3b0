"""Strategy presets.

``FSDP2Strategy`` is Lightning's ``ModelParallelStrategy`` used as pure FSDP2: the data-parallel size is the
world size and there is no tensor parallelism. (``ModelParallelStrategy``'s ``data_parallel_size="auto"``
means the number of *nodes*, which is not what a user asking for FSDP wants.) ``DistillModule.configure_model``
applies ``fully_shard`` over the device mesh this strategy builds.
"""

from __future__ import annotations

from datetime import timedelta

from lightning.pytorch.strategies import ModelParallelStrategy


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 over all ranks (works on GPUs with NCCL and on CPUs with gloo).

    Args:
        save_distributed_checkpoint: Save sharded checkpoints (a directory per checkpoint, fast and memory-light);
            ``lit-distill export`` consolidates them. False gathers a single-file checkpoint on rank 0.
        process_group_backend: ``nccl``/``gloo``; chosen from the device when unset.
        timeout: Collective timeout.
    """

    def __init__(
        self,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = timedelta(minutes=30),
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()
