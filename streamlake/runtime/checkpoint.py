"""One offset commit of StreamLake's consumer, as ordered, named steps.

The invariant: a committed offset never runs ahead of the state written for
the records below it. The steps, in order:

1. **sends** - every forward and DLQ record of a batch is acknowledged before
   the batch completes (StreamBinding.handle_batch), so no send of a
   completed batch is still open when a checkpoint starts;
2. :meth:`Checkpoint.flush_state` - every buffered key state and counter
   delta is written and its changelog records acknowledged;
3. :meth:`Checkpoint.commit_offsets` - Faust's commit: offsets from
   ReadProgress (completed batches only), its producer flushed, then committed;
4. :meth:`Checkpoint.complete_deferred` - batches that finished during steps
   2-3 complete now; their state is in the buffer, so the next checkpoint
   flushes it before it commits their offsets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping

from faust.types import TP

from .state_buffer import StateBuffer

__all__ = ["Checkpoint", "Spans"]

#: per partition, the [start, end) offsets a batch covered
Spans = Mapping[TP, tuple[int, int]]


class Checkpoint:
    """Commits in named steps; batches that finish mid-commit wait for the next one."""

    def __init__(self, buffers: Callable[[], Iterable[StateBuffer]], complete: Callable[[Spans], None],
                 generation: Callable[[], int]) -> None:
        self.buffers = buffers
        self.complete = complete
        self.generation = generation
        self.committing = False
        self._deferred: list[tuple[int, Spans]] = []

    def finish_batch(self, generation: int, spans: Spans) -> None:
        """A batch's records are handled and their state buffered: complete them, or defer during a commit."""
        if self.committing:
            self._deferred.append((generation, spans))
        else:
            self.complete(spans)

    async def commit(self, commit_offsets: Callable[[], Awaitable[bool]]) -> bool:
        self.committing = True
        try:
            await self.flush_state()
            return await self.commit_offsets(commit_offsets)
        finally:
            self.committing = False
            self.complete_deferred()

    async def flush_state(self) -> None:
        for buffer in self.buffers():
            await buffer.flush()

    async def commit_offsets(self, commit_offsets: Callable[[], Awaitable[bool]]) -> bool:
        return await commit_offsets()

    def complete_deferred(self) -> None:
        """Complete deferred batches of the current generation (older ones are read again by the new owner)."""
        deferred, self._deferred = self._deferred, []
        current = self.generation()
        for generation, spans in deferred:
            if generation == current:
                self.complete(spans)
