from typing import Collection, Iterator

from gq._core.heap import ReadyHeap

def push_ready_rows(heap: ReadyHeap, rows: Iterator[tuple[bytes, bytes]],
                    handled: Collection[str], limit: int) -> tuple[int, int]: ...
